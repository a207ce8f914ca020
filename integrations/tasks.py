"""Celery tasks for integrator webhooks: open the tenant scope (in ``delivery_run``), call
the service."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from django.conf import settings

from integrations.dispatch import delivery_run
from voice_platform.observability import log_context

# Above one POST's timeout: the POST's own deadline fires first; these are backstops.
SOFT_TIME_LIMIT = int(settings.WEBHOOK_TIMEOUT) + 15
TIME_LIMIT = int(settings.WEBHOOK_TIMEOUT) + 30


@shared_task(
    bind=True,
    name="integrations.tasks.webhook_deliver_task",
    acks_late=True,
    # A worker killed mid-POST requeues the task; the delivery's claim makes a redelivery
    # a no-op until the attempt's lease runs out (then it counts as failed and is retried).
    reject_on_worker_lost=True,
    soft_time_limit=SOFT_TIME_LIMIT,
    time_limit=TIME_LIMIT,
    ignore_result=True,
)
def webhook_deliver_task(self: Task[Any, Any], *, tenant_id: int, delivery_id: int) -> None:
    """Attempt delivery ``delivery_id`` if it is due; the message carries ids only."""
    with log_context.bound(tenant=tenant_id):
        delivery_run(tenant_id=tenant_id, delivery_id=delivery_id)
