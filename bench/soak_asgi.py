"""The platform's ASGI application plus one read-only probe, for bench/soak.py only.

    daphne bench.soak_asgi:application

`GET /__soak__/state` answers what only the server process itself can see: its asyncio
tasks (counted by name, or by coroutine when unnamed), its threads and the sessions its
bridges hold. Everything else goes to `voice_platform.asgi.application` unchanged. The probe
lives here, not in the product: it exists to be run by the soak and nowhere else.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter
from typing import Any

from voice_platform.asgi import application as platform_application

STATE_PATH = "/__soak__/state"
_UNNAMED = re.compile(r"^Task-\d+$")


def _task_kind(task: asyncio.Task[Any]) -> str:
    """A task's name, or its coroutine's qualified name when it was left unnamed
    (asyncio's `Task-<n>` says nothing about what leaked)."""
    name = task.get_name()
    if not _UNNAMED.match(name):
        # Numbered names (per session or per connection) grouped by their stem.
        return re.sub(r"[-_:][0-9a-f-]{6,}$", "", name)
    coro = task.get_coro()
    return getattr(coro, "__qualname__", type(coro).__name__)


def server_state() -> dict[str, Any]:
    from sessions.reaper import held_sessions

    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    return {
        "tasks": len(tasks),
        "task_kinds": dict(Counter(_task_kind(t) for t in tasks)),
        "threads": threading.active_count(),
        "thread_names": dict(Counter(re.sub(r"\d+", "N", t.name) for t in threading.enumerate())),
        "held_sessions": len(held_sessions),
    }


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == STATE_PATH:
        body = json.dumps(server_state()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    await platform_application(scope, receive, send)
