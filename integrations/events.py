"""The integrations app's public interface: other apps announce events here.

``emit`` writes one ``WebhookDelivery`` per enabled endpoint of the tenant subscribed to the
event, and hands them to delivery once the caller's transaction commits. A tenant without
endpoints costs one indexed query. Emission never raises into the caller, nor breaks its
transaction (it runs in a savepoint): a session or a tool call must not fail because a
webhook could not be queued (the error is logged).
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from integrations.models import WebhookDelivery, WebhookEndpoint

log = logging.getLogger(__name__)

SESSION_STARTED = "session.started"
SESSION_ENDED = "session.ended"
TOOL_CALL_FINISHED = "tool.call.finished"
ALERT_RAISED = "alert.raised"
ALERT_CLEARED = "alert.cleared"

# A session ended from outside its connection (REST, the admin): the bridge that held it
# may still be writing its last progress. Its report is built this much later.
SETTLE = timedelta(seconds=3)


def new_msg_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def emit(
    *,
    tenant_id: int,
    event_type: str,
    subject: str = "",
    payload: dict[str, Any] | None = None,
    delay: timedelta | None = None,
    now: datetime | None = None,
) -> list[WebhookDelivery]:
    """Queue ``event_type`` for each subscribed endpoint; the deliveries created.

    ``payload``: the body, or None to build it at the first attempt from ``subject``
    (``integrations.payloads.DEFERRED``). ``delay``: the first attempt no earlier than this.
    """
    try:
        # A savepoint inside the caller's transaction: on PostgreSQL a failed query aborts
        # the whole transaction, and the caller's own writes and commit would fail after
        # it. Rolled back to the savepoint, only the emission is lost.
        with transaction.atomic():
            return _emit(tenant_id, event_type, subject, payload, delay, now or timezone.now())
    except Exception:
        log.exception("webhook event %s (%s) could not be queued", event_type, subject)
        return []


def _emit(
    tenant_id: int,
    event_type: str,
    subject: str,
    payload: dict[str, Any] | None,
    delay: timedelta | None,
    now: datetime,
) -> list[WebhookDelivery]:
    # unscoped: called from sessions, tools and alerts, inside or outside a tenant scope;
    # the tenant is explicit.
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.unscoped.filter(tenant_id=tenant_id, enabled=True).only(
            "pk", "event_types"
        )
        if endpoint.subscribes(event_type)
    ]
    if not endpoints:
        return []
    due = now + (delay or timedelta(0))
    deliveries = WebhookDelivery.unscoped.bulk_create(
        WebhookDelivery(
            tenant_id=tenant_id,
            endpoint_id=endpoint.pk,
            event_type=event_type,
            msg_id=new_msg_id(),
            subject=subject,
            payload=payload,
            next_attempt_at=due,
        )
        for endpoint in endpoints
    )
    countdown = (delay or timedelta(0)).total_seconds()

    def dispatch() -> None:
        from integrations.dispatch import delivery_schedule

        for delivery in deliveries:
            delivery_schedule(tenant_id=tenant_id, delivery_id=delivery.pk, countdown=countdown)

    transaction.on_commit(dispatch)
    return deliveries


# --- the hooks other apps call ---------------------------------------------------------------


# Session opens come in storms (a rolling restart): their event is queued from this thread,
# off the database thread every session shares (one query, and a write when the tenant has
# endpoints). One thread: it only queues, the POSTs run elsewhere.
_emitter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="integrator-events")


def _emit_off_thread(tenant_id: int, event_type: str, subject: str) -> None:
    try:
        emit(tenant_id=tenant_id, event_type=event_type, subject=subject)
    finally:
        connections.close_all()  # this thread's connections only


def session_started(session: Any) -> None:
    """A new session was opened (``sessions.services.voice_session_open``, after its
    commit). Its body is built at the first attempt, from the session's row."""
    _emitter.submit(_emit_off_thread, session.tenant_id, SESSION_STARTED, str(session.pk))


def session_ended(*, session_id: uuid.UUID, settle: bool, tenant_id: int | None = None) -> None:
    """A session reached its final state. ``settle``: ended from outside its connection,
    whose last progress may still be on its way (the report waits ``SETTLE``)."""
    if tenant_id is None:
        from sessions.models import VoiceSession

        try:
            # unscoped: a primary-key read for the tenant, whatever scope the caller is in.
            tenant_id = (
                VoiceSession.unscoped.filter(pk=session_id)
                .values_list("tenant_id", flat=True)
                .first()
            )
        except Exception:  # like emit: the session's end must not fail because of this
            log.exception("webhook event session.ended (%s) could not be queued", session_id)
            return
        if tenant_id is None:
            return
    emit(
        tenant_id=tenant_id,
        event_type=SESSION_ENDED,
        subject=str(session_id),
        delay=SETTLE if settle else None,
    )


def tool_call_finished(*, tenant_id: int, record_id: int) -> None:
    """A tool call reached its final status (succeeded, failed, timeout, cancelled,
    rejected)."""
    emit(tenant_id=tenant_id, event_type=TOOL_CALL_FINISHED, subject=str(record_id))


def alert_changed(*, tenant_id: int, alert_id: int, event_type: str) -> None:
    """An error-rate alert was raised or cleared (``analytics.alerts``)."""
    from analytics.alert_webhooks import alert_payload
    from analytics.models import Alert

    now = timezone.now()
    try:
        # unscoped: the evaluator runs in the tenant's scope; the hook does not rely on it.
        alert = Alert.unscoped.select_related("tenant").filter(pk=alert_id).first()
        payload = None if alert is None else alert_payload(alert=alert, event=event_type, at=now)
    except Exception:  # like emit: the evaluation goes on without this event
        log.exception("webhook event %s (%s) could not be queued", event_type, alert_id)
        return
    if payload is not None:
        emit(
            tenant_id=tenant_id,
            event_type=event_type,
            subject=str(alert_id),
            payload=payload,
            now=now,
        )
