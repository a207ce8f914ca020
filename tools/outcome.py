"""A call's outcome: what the model receives, the ``tool.result`` wake-up, and finishing a
call from outside its run (timeout, cancel, a broker that refused it).

Every write here is conditional on the row not being finished (``queued``/``running``), so
two actors racing (the worker finishing, the bridge timing out or cancelling) cannot both
win; finished rows are protected by a database trigger as well.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

from django.conf import settings
from django.utils import timezone

from integrations import events as integration_events
from tools.models import ToolCallRecord
from voice_platform.celery import app as celery_app

logger = logging.getLogger(__name__)

Status = ToolCallRecord.Status
ERROR_MAX_CHARS = 500
UNFINISHED = (Status.QUEUED, Status.RUNNING)


def elapsed_ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, int((end - start).total_seconds() * 1000))


def describe_error(exc: BaseException) -> str:
    """A short error for the model and the audit: class and message, never a traceback."""
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def tool_call_response(*, record: ToolCallRecord) -> dict[str, Any]:
    """What the model receives for this call."""
    if record.status == Status.SUCCEEDED:
        return dict(record.result or {})
    if record.status == Status.REJECTED:
        return {"error": record.rejection_reason}
    if record.status == Status.FAILED:
        return {"error": record.error or "tool failed"}
    if record.status == Status.TIMEOUT:
        return {"error": f"tool timed out after {record.timeout_seconds:g}s"}
    if record.status == Status.CANCELLED:
        return {"error": "cancelled"}
    return {"error": f"tool call is still {record.status}"}


def tool_call_outcome(*, record: ToolCallRecord) -> dict[str, Any]:
    """The ``tool.result`` message for a call: its key, status and the model's answer.

    Sent only after the outcome is committed, so it is a copy of what the database says;
    the waiting call uses it instead of reading the row back.
    """
    return {
        "type": "tool.result",
        "key": record.idempotency_key or "",
        "record_id": record.pk,
        "call_id": record.call_id,
        "status": record.status,
        "response": tool_call_response(record=record),
    }


def tool_call_by_key(key: str) -> ToolCallRecord | None:
    found: ToolCallRecord | None = ToolCallRecord.objects.filter(idempotency_key=key).first()
    return found


def tool_call_outcome_by_key(key: str) -> dict[str, Any] | None:
    """The outcome of the call with this key, or None while it has no row."""
    record = tool_call_by_key(key)
    return None if record is None else tool_call_outcome(record=record)


def tool_call_finish_early(
    *,
    record: ToolCallRecord,
    status: Literal["timeout", "cancelled", "failed"],
    error: str = "",
) -> bool:
    """Finish a call that has not finished, as ``status``; True if this changed it.

    ``timeout`` and ``cancelled`` finish a waiting or running call (a running tool's late
    result then loses its conditional update); ``failed`` only a call that never started
    (only its own run fails a started call). Cancelling also revokes the Celery task.
    """
    now = timezone.now()
    allowed = (Status.QUEUED,) if status == "failed" else UNFINISHED
    message = (error or _early_error(record, status))[:ERROR_MAX_CHARS]
    fields = {
        "status": status,
        "finished_at": now,
        "duration_ms": elapsed_ms(record.started_at, now),
        "pending_arguments": "",
        "error": message,
    }
    changed = ToolCallRecord.objects.filter(pk=record.pk, status__in=allowed).update(**fields)
    if not changed:
        return False
    integration_events.tool_call_finished(tenant_id=record.tenant_id, record_id=record.pk)
    for name, value in fields.items():
        setattr(record, name, value)
    if status == "cancelled" and record.celery_task_id and settings.TOOL_EXECUTION == "celery":
        try:
            celery_app.control.revoke(record.celery_task_id)
        except Exception:  # the record already says cancelled; the worker checks it
            logger.warning("could not revoke tool task %s", record.celery_task_id, exc_info=True)
    return True


def tool_call_cancel_by_key(key: str) -> bool:
    """Cancel the unfinished call with this key (the model withdrew it); True if it did."""
    record = tool_call_by_key(key)
    return record is not None and tool_call_finish_early(record=record, status="cancelled")


def _early_error(record: ToolCallRecord, status: str) -> str:
    if status == "timeout":
        return f"tool timed out after {record.timeout_seconds:g}s"
    return "cancelled" if status == "cancelled" else "tool failed"
