"""Where deliveries run: Celery workers when Redis is configured (``WEBHOOK_DELIVERY =
"celery"``), else a few threads of this process (the embedded default), like tools.

Each delivery's row says when it is due (``next_attempt_at``); dispatching is only a
wake-up. A short wait is a Celery countdown (or an in-process timer); a longer one, and any
wake-up lost (a restart, a broker refusing the task), is found by the sweeper
(``sweep``, a periodic job of every server process). The claim in
``integrations.delivery`` makes a delivery woken twice attempt once.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connections
from django.utils import timezone

from integrations.delivery import deliveries_due, delivery_attempt
from voice_platform.tenancy.scope import tenant_scope

log = logging.getLogger(__name__)

# Longer waits are left to the sweeper: a Redis broker redelivers a task held past its
# visibility timeout (CELERY_VISIBILITY_TIMEOUT), and a timer dies with its process.
COUNTDOWN_MAX = 120.0
# The sweeper leaves a just-due delivery to its own wake-up for this long.
SWEEP_GRACE = timedelta(seconds=5)

_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="integrator-webhooks")


def delivery_run(*, tenant_id: int, delivery_id: int) -> None:
    """Attempt the delivery now if due, then wake its retry (a task's or a thread's body)."""
    with tenant_scope(tenant_id):
        result = delivery_attempt(delivery_id=delivery_id)
    if result is not None and result.retry_after_seconds is not None:
        delivery_schedule(
            tenant_id=tenant_id, delivery_id=delivery_id, countdown=result.retry_after_seconds
        )


def _run_in_thread(tenant_id: int, delivery_id: int) -> None:
    try:
        delivery_run(tenant_id=tenant_id, delivery_id=delivery_id)
    except Exception:  # a database hiccup: the sweeper retries what is still due
        log.exception("webhook delivery %s failed", delivery_id)
    finally:
        connections.close_all()  # this thread's connections only


def _publish(tenant_id: int, delivery_id: int, countdown: float) -> None:
    from integrations.tasks import webhook_deliver_task

    options: dict[str, Any] = {"countdown": countdown} if countdown > 0 else {}
    try:
        webhook_deliver_task.apply_async(
            kwargs={"tenant_id": tenant_id, "delivery_id": delivery_id},
            queue=settings.WEBHOOK_CELERY_QUEUE,
            **options,
        )
    except Exception:  # the broker is down: the sweeper dispatches it again later
        log.warning("webhook delivery %s could not be queued", delivery_id, exc_info=True)


def delivery_schedule(*, tenant_id: int, delivery_id: int, countdown: float = 0.0) -> None:
    """Wake the delivery in ``countdown`` seconds (longer waits: the sweeper's). Never
    blocks: callers include a live session's database thread."""
    if countdown > COUNTDOWN_MAX:
        return
    if settings.WEBHOOK_DELIVERY == "celery":
        # Published from a thread of ours: a broker that does not answer (kombu retries
        # the connection) holds it, not the caller.
        _pool.submit(_publish, tenant_id, delivery_id, countdown)
        return
    if countdown <= 0:
        _pool.submit(_run_in_thread, tenant_id, delivery_id)
        return
    timer = threading.Timer(countdown, _pool.submit, args=(_run_in_thread, tenant_id, delivery_id))
    timer.daemon = True
    timer.start()


def sweep() -> int:
    """The periodic job: wake every delivery past its time; how many."""
    due = deliveries_due(now=timezone.now() - SWEEP_GRACE)
    for tenant_id, delivery_id in due:
        delivery_schedule(tenant_id=tenant_id, delivery_id=delivery_id)
    return len(due)
