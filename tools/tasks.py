"""Celery tasks for tools: open the tenant scope, call the service."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from django.conf import settings

from tools.execution import tool_call_execute
from voice_platform.observability import log_context
from voice_platform.tenancy.scope import tenant_scope

# Above the largest tool timeout: the service's own timeout fires first; these are backstops.
SOFT_TIME_LIMIT = int(settings.TOOL_TIMEOUT_MAX) + 15
TIME_LIMIT = int(settings.TOOL_TIMEOUT_MAX) + 30


# The queue comes from CELERY_TASK_ROUTES (Celery 5.7 deprecates the task's own "queue"
# attribute) and admission names it explicitly.
@shared_task(
    bind=True,
    name="tools.tasks.tool_call_execute_task",
    acks_late=True,
    # A worker killed mid-call requeues the task; the call's claim (queued -> running)
    # makes the redelivery a no-op, so no side effect ever runs twice.
    reject_on_worker_lost=True,
    soft_time_limit=SOFT_TIME_LIMIT,
    time_limit=TIME_LIMIT,
    ignore_result=True,
)
def tool_call_execute_task(self: Task[Any, Any], *, tenant_id: int, record_id: int) -> None:
    """Run the ``queued`` call ``record_id``; its row holds everything the call needs (its
    arguments encrypted), so the message carries ids only."""
    # Until the record is read (its session, call id...), a line names the call by its row.
    with (
        log_context.bound(tenant=tenant_id, tool_call=record_id),
        tenant_scope(tenant_id),  # workers start with no scope; another tenant's id: 404
    ):
        tool_call_execute(record_id=record_id)
