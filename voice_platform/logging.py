"""Log lines as JSON in production and readable text in development, with a live session's
ids and without credentials, whichever library emitted them (docs/logging.md).

Every call site uses the standard library (``logging.getLogger(__name__)``). The handler's
formatter is structlog's ``ProcessorFormatter``: its ``foreign_pre_chain`` turns each record
into an event dict (level, logger, timestamp, ``extra=`` fields and the ids of
``observability.log_context``), then the dict is cleaned of credentials and rendered as one
JSON object per line (``LOG_FORMAT=json``) or as an aligned line (``console``).
``structlog.get_logger()`` callers go through the same handler and chain.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from voice_platform.observability.log_context import current_fields

FORMATS = ("json", "console")

_PATTERNS = [
    # ?token=, ?resume=, ?key=, ?access_token= in request lines and URLs.
    re.compile(r"(?i)([?&](?:token|resume|key|access_token)=)[^&\s\"']+"),
    # Credential headers as HTTP libraries print them at DEBUG ("> x-goog-api-key: ...").
    re.compile(
        r"(?i)(\b(?:x-goog-api-key|x-api-key|authorization|proxy-authorization|cookie|set-cookie)"
        r"[\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|token|basic)\s+)?[^\s\"',;]+"
    ),
    re.compile(r"(?i)(\b(?:bearer|token)\s+)[A-Za-z0-9._~+/=-]{8,}"),
    # Our own credentials by their prefix: API keys, client tokens, resume tokens.
    re.compile(r"(vpk_[0-9a-f]{8,12}_)[A-Za-z0-9_-]+"),
    re.compile(r"(\b(?:ct|rt)_)[A-Za-z0-9_-]{20,}"),
    # Google API keys (a tenant's own Gemini key).
    re.compile(r"(AIza)[0-9A-Za-z_-]{35}"),
]
REDACTED = "[redacted]"
# Structured fields whose name says they hold a credential are dropped whatever their value.
_SECRET_FIELD = re.compile(
    r"(?i)(?:^|_)(?:secret|token|password|passwd|api_?key|authorization|cookie)$"
)


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(rf"\1{REDACTED}", text)
    return text


def redact_value(value: Any) -> Any:
    """``value`` with every credential in its strings (nested too) replaced."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {
            key: REDACTED if _SECRET_FIELD.search(str(key)) else redact_value(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item) for item in value]
    # Objects (a UUID, the request in Django's own extra=) are rendered as text: clean it.
    return redact(str(value))


class RedactSecretsFilter(logging.Filter):
    """Cleans the message of every record the handler sees, for any formatter on it; the
    formatter's ``redact_event`` cleans ``extra=`` fields and tracebacks as well."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def add_log_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The ids bound by ``log_context`` (tenant, agent, session, turn, call...); a field
    the call site passed itself wins."""
    for key, value in current_fields().items():
        event_dict.setdefault(key, value)
    return event_dict


def redact_event(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The last step before rendering: nothing leaves with a credential in it."""
    cleaned: EventDict = redact_value(event_dict)
    return cleaned


# Run for records of the standard library (foreign_pre_chain) and structlog's own alike.
SHARED_PROCESSORS: list[Processor] = [
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    add_log_context,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _renderer(kind: str) -> Processor:
    if kind == "json":
        return structlog.processors.JSONRenderer(sort_keys=False)
    if kind == "console":
        return structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(),
            # Rich's default shows each frame's locals: a traceback would print secrets.
            exception_formatter=structlog.dev.plain_traceback,
        )
    raise ValueError(f"log format {kind!r} is not one of {', '.join(FORMATS)}")


def formatter(kind: str = "json") -> structlog.stdlib.ProcessorFormatter:
    """The formatter of ``LOGGING``'s handler (``"()": "voice_platform.logging.formatter"``)."""
    renderer = _renderer(kind)
    _route_structlog_to_stdlib()
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=SHARED_PROCESSORS,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # A string before redaction, so a secret in an exception's message is cleaned.
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
    )


_configured = threading.Lock()


def _route_structlog_to_stdlib() -> None:
    """``structlog.get_logger()`` events go to the standard library's handlers (this
    formatter, the redaction) instead of structlog's default printer."""
    with _configured:
        if structlog.is_configured():
            return
        structlog.configure(
            processors=[
                structlog.stdlib.filter_by_level,
                *SHARED_PROCESSORS,
                structlog.stdlib.PositionalArgumentsFormatter(),
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=True,
        )
