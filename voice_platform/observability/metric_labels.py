"""Label values of the Prometheus metrics, each from a bounded set (docs/metrics.md).

Every distinct label value is a time series held by every process and by Prometheus for
as long as it is kept: a value taken from user input (a tool name the model made up, a
tenant among thousands) would grow them without limit. So each value here is looked up in
a fixed set, and whatever is not in it is counted under one catch-all value.
"""

from __future__ import annotations

import re
import threading

from django.conf import settings

from tools.registry import get_tool

OTHER = "_other"

# sessions/protocol.schema.json, server.session.ended: the reasons a session ends with.
END_REASONS = frozenset({
    "client_closed", "max_duration", "superseded", "bad_frame", "rate_limited",
    "upstream_error", "upstream_unavailable", "upstream_busy", "ended_by_api",
    "ended_by_admin", "server_error", "server_restart", "client_gone", "ended",
    "caller_hung_up", "agent_hung_up", "call_transferred", "action_failed",
})  # fmt: skip
# The causes of an upstream reconnect (session.reconnecting; docs/live-resilience.md).
RECONNECT_CAUSES = frozenset({
    "go_away", "go_away_deadline", "requested", "connection_deadline", "connection_lost",
    "upstream_not_implemented", "upstream_unresponsive", "stall", "session_limit",
    "handle_rejected", "resume_refused", "upstream_quota", "upstream_rejected",
    "upstream_error",
})  # fmt: skip
# upstream_error_<exception>: the exceptions a connection attempt usually ends with.
_UPSTREAM_EXCEPTIONS = frozenset({
    "TimeoutError", "OSError", "ConnectionRefusedError", "ConnectionResetError",
    "ConnectionClosed", "ConnectionClosedError", "ConnectionClosedOK", "InvalidHandshake",
    "InvalidStatus", "InvalidMessage",
})  # fmt: skip
_CLOSED_WITH = re.compile(r"^upstream_closed_(\d{4})$")
TOOL_STATUSES = frozenset({"succeeded", "failed", "timeout", "cancelled", "rejected"})
WEBHOOK_TOOL = "webhook"

_tenants: set[str] = set()
_tenants_lock = threading.Lock()


def tenant_label(slug: str) -> str:
    """The tenant's label value.

    With ``METRICS_TENANT_LABELS`` set: the slug for the tenants it lists, ``_other`` for
    every other one; the same set in every process and after every restart, so a host's
    series stay bounded however often its processes restart. Unset: the first
    ``METRICS_TENANT_LABEL_LIMIT`` tenants this process labels (a process keeps a tenant's
    value for its life, so a gauge raised under one value is lowered under the same one);
    the bound is then per process start (docs/metrics.md)."""
    listed = settings.METRICS_TENANT_LABELS
    if listed:
        return slug if slug in listed else OTHER
    with _tenants_lock:
        if slug in _tenants:
            return slug
        if len(_tenants) < settings.METRICS_TENANT_LABEL_LIMIT:
            _tenants.add(slug)
            return slug
    return OTHER


def end_reason_label(reason: str) -> str:
    return reason if reason in END_REASONS else OTHER


def reconnect_cause_label(cause: str) -> str:
    if cause in RECONNECT_CAUSES:
        return cause
    closed = _CLOSED_WITH.match(cause)
    if closed is not None:
        # WebSocket close codes: the standard ones by number, the private range as one.
        return cause if 1000 <= int(closed.group(1)) <= 1015 else "upstream_closed_other"
    if cause.startswith("upstream_error_"):
        exception = cause.removeprefix("upstream_error_")
        return cause if exception in _UPSTREAM_EXCEPTIONS else "upstream_error"
    return OTHER


def tool_name_label(name: str) -> str:
    """A platform tool (the registry, fixed by the deployed code) by name; every other
    name, a tenant's webhook tool or one the model made up (refused), as ``webhook``."""
    return name if get_tool(name) is not None else WEBHOOK_TOOL


def tool_status_label(status: str) -> str:
    return status if status in TOOL_STATUSES else OTHER


def model_label(model: str) -> str:
    """The model as configured: one of ``LIVE_MODELS``, the only ones agents may use."""
    return model if model in settings.LIVE_MODELS else OTHER
