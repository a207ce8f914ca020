"""Ids on every log line of a live session or a tool call, whichever task logs it.

``bind_session`` puts one mutable ``LogContext`` in a context variable; tasks created
afterwards (the bridge's, the tool gateway's) inherit the same object, so the turn number
updated in place reaches every line. ``voice_platform.logging`` adds the fields to records.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

_current: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar(
    "voice_log_context", default=None
)


@dataclass
class LogContext:
    fields: dict[str, Any] = field(default_factory=dict)

    def update(self, **values: Any) -> None:
        self.fields.update({k: v for k, v in values.items() if v is not None})


def bind_session(**ids: Any) -> LogContext:
    """For the current task and those it creates from now on: tenant, agent, session..."""
    context = LogContext()
    context.update(**ids)
    _current.set(context)
    return context


@contextmanager
def bound(**ids: Any) -> Iterator[LogContext]:
    """Ids for the duration of a block (a task, a request), restored after."""
    parent = _current.get()
    context = LogContext(dict(parent.fields) if parent else {})
    context.update(**ids)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def current_fields() -> dict[str, Any]:
    context = _current.get()
    return dict(context.fields) if context is not None else {}
