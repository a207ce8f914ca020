"""Sending a delivery: claim, one signed POST, record the attempt, schedule what follows.

An attempt is claimed under the delivery's row lock (``pending`` and due -> ``delivering``,
an attempt row ``sending``) before the POST, so a delivery dispatched twice (a Celery
redelivery, the sweeper meeting a scheduled retry) is attempted once. The POST goes through
``analytics.webhook_post.standard_webhook_post``: Standard Webhooks signatures and the
outbound-address rules of webhook tools (``tools.webhooks.pinned_post``).

Outcomes (docs/webhooks.md): a 2xx succeeds. HTTP 410 Gone fails the delivery and disables
the endpoint. An address the platform refuses to call fails the delivery at once (no
request is made; retrying cannot help until the URL is fixed). Anything else (another
status, a timeout, a connection or TLS failure) is retried after ``retry_delay`` until
``WEBHOOK_MAX_ATTEMPTS`` attempts, then fails. A replay starts a new round of attempts with
the same ``webhook-id``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analytics.webhook_post import WebhookStatusError, standard_webhook_post
from integrations.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from integrations.payloads import DEFERRED, NotSettled, SubjectGone, envelope
from tools.webhooks import WebhookError, WebhookRefused
from voice_platform.crypto import DecryptionError, decrypt_str

log = logging.getLogger(__name__)

Status = WebhookDelivery.Status
Outcome = WebhookAttempt.Outcome
RETRY_FACTOR = 6.0
JITTER = 0.2  # each wait is the schedule's +-20%, so a receiver's outage is not met in step
ERROR_MAX_CHARS = 500
# An attempt still "delivering" this long after its start died with its process.
LOST_MARGIN = timedelta(seconds=30)


def retry_delay(attempt: int, *, jitter: bool = True) -> float:
    """Seconds to wait after the ``attempt``-th failed attempt of a round (1-based):
    ``WEBHOOK_RETRY_BASE * 6**(attempt-1)``, at most ``WEBHOOK_RETRY_CAP``, +-``JITTER``."""
    base = min(
        float(settings.WEBHOOK_RETRY_CAP),
        float(settings.WEBHOOK_RETRY_BASE) * RETRY_FACTOR ** (attempt - 1),
    )
    if not jitter:
        return base
    return base * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311 (spreading, not secrecy)


def lease() -> timedelta:
    return timedelta(seconds=settings.WEBHOOK_TIMEOUT) + LOST_MARGIN


@dataclass(frozen=True)
class Claim:
    delivery_id: int
    attempt_id: int
    number: int
    round_attempts: int
    url: str
    secret: str
    msg_id: str
    body: bytes


@dataclass(frozen=True)
class Deferred:
    """The body cannot be built yet (``NotSettled``): the delivery is due again in
    ``retry_in`` seconds, with no attempt made or counted."""

    retry_in: float
    reason: str


@dataclass(frozen=True)
class AttemptResult:
    """What one call of ``delivery_attempt`` did (None from it: nothing was due).
    ``outcome`` ``deferred``: the body is not final yet and nothing was sent (``number``
    0); the delivery is due again after ``retry_after_seconds``."""

    number: int
    outcome: str
    status_code: int | None
    error: str
    retry_after_seconds: float | None


def _fail_lost_attempt(delivery: WebhookDelivery, now: datetime) -> None:
    WebhookAttempt.objects.filter(delivery=delivery, outcome=Outcome.SENDING).update(
        outcome=Outcome.FAILED, error="no result: the sending process stopped"
    )


def _finalize(delivery: WebhookDelivery, status: str, error: str) -> None:
    delivery.status = status
    delivery.next_attempt_at = None
    delivery.last_error = error[:ERROR_MAX_CHARS]
    delivery.save(update_fields=["status", "next_attempt_at", "last_error", "updated_at"])


def _claim(delivery_id: int, now: datetime) -> Claim | Deferred | None:
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or delivery.status not in (Status.PENDING, Status.DELIVERING):
            return None
        if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
            return None  # not due yet, or an attempt in flight elsewhere
        if delivery.status == Status.DELIVERING:
            _fail_lost_attempt(delivery, now)
            if delivery.round_attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
                _finalize(delivery, Status.FAILED, "no result: the sending process stopped")
                return None
        endpoint: WebhookEndpoint = delivery.endpoint
        if not endpoint.enabled:
            _finalize(delivery, Status.FAILED, "the endpoint is disabled")
            return None
        try:
            secret = decrypt_str(endpoint.secret_encrypted)
        except DecryptionError:
            _finalize(delivery, Status.FAILED, "the endpoint's secret cannot be decrypted")
            return None
        if delivery.payload is None:
            builder = DEFERRED.get(delivery.event_type)
            try:
                if builder is None:
                    raise SubjectGone(f"no payload for {delivery.event_type}")
                data = builder(delivery.subject, now - delivery.created_at)
                # The event's time: when it happened, not when it was first sent.
                delivery.payload = envelope(delivery.event_type, delivery.created_at, data)
            except SubjectGone as exc:
                _finalize(delivery, Status.FAILED, str(exc))
                return None
            except NotSettled as exc:
                delivery.next_attempt_at = now + exc.retry_in
                delivery.save(update_fields=["next_attempt_at", "updated_at"])
                return Deferred(exc.retry_in.total_seconds(), str(exc))
        delivery.status = Status.DELIVERING
        delivery.attempt_count += 1
        delivery.round_attempts += 1
        delivery.next_attempt_at = now + lease()
        delivery.save(
            update_fields=[
                "payload", "status", "attempt_count", "round_attempts", "next_attempt_at",
                "updated_at",
            ]
        )  # fmt: skip
        attempt = WebhookAttempt.objects.create(
            tenant_id=delivery.tenant_id,
            delivery=delivery,
            number=delivery.attempt_count,
            started_at=now,
        )
        # Sorted keys: the body is the same bytes at every attempt (the stored JSONB does
        # not keep key order), so a receiver may compare or hash it.
        body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
        return Claim(
            delivery.pk, attempt.pk, attempt.number, delivery.round_attempts, endpoint.url,
            secret, delivery.msg_id, body,
        )  # fmt: skip


@dataclass(frozen=True)
class _Sent:
    outcome: str
    status_code: int | None
    error: str
    retryable: bool


def _send(claim: Claim) -> _Sent:
    try:
        status = standard_webhook_post(
            url=claim.url,
            secret=claim.secret,
            msg_id=claim.msg_id,
            body=claim.body,
            timeout=settings.WEBHOOK_TIMEOUT,
        )
    except WebhookStatusError as exc:
        return _Sent(Outcome.FAILED, exc.status, str(exc), retryable=exc.status != 410)
    except WebhookRefused as exc:
        return _Sent(Outcome.FAILED, None, f"refused: {exc}", retryable=False)
    except WebhookError as exc:  # timeouts, TLS, connection: messages never hold the URL
        return _Sent(Outcome.FAILED, None, str(exc), retryable=True)
    return _Sent(Outcome.SUCCEEDED, status, "", retryable=False)


def _record(claim: Claim, sent: _Sent, started: float) -> AttemptResult:
    now = timezone.now()
    outcome, code, error = sent.outcome, sent.status_code, sent.error
    retry_after: float | None = None
    if sent.retryable and claim.round_attempts < settings.WEBHOOK_MAX_ATTEMPTS:
        retry_after = retry_delay(claim.round_attempts)
    with transaction.atomic():
        WebhookAttempt.objects.filter(pk=claim.attempt_id).update(
            outcome=outcome,
            status_code=code,
            error=error[:ERROR_MAX_CHARS],
            duration_ms=max(0, int((time.monotonic() - started) * 1000)),
            retry_after_seconds=retry_after,
        )
        fields: dict[str, Any] = {"last_status_code": code, "last_error": error[:ERROR_MAX_CHARS]}
        if outcome == Outcome.SUCCEEDED:
            fields.update(status=Status.SUCCEEDED, next_attempt_at=None)
        elif retry_after is not None:
            fields.update(
                status=Status.PENDING, next_attempt_at=now + timedelta(seconds=retry_after)
            )
        else:
            fields.update(status=Status.FAILED, next_attempt_at=None)
        # Only the attempt's own claim is closed: a replay meanwhile started another round.
        WebhookDelivery.objects.filter(
            pk=claim.delivery_id, status=Status.DELIVERING, attempt_count=claim.number
        ).update(updated_at=now, **fields)
        if code == 410:
            delivery = WebhookDelivery.objects.get(pk=claim.delivery_id)
            WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(
                enabled=False, disabled_reason="the endpoint answered HTTP 410 Gone"
            )
    return AttemptResult(claim.number, outcome, code, error, retry_after)


def delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> AttemptResult | None:
    """Attempt the delivery if it is due (inside its tenant's scope); None when it was not
    (already done, not yet due, or in flight elsewhere). Never raises for a failed POST."""
    claim = _claim(delivery_id, now or timezone.now())
    if claim is None:
        return None
    if isinstance(claim, Deferred):  # before the first attempt: none was made
        return AttemptResult(0, "deferred", None, claim.reason, claim.retry_in)
    started = time.monotonic()
    sent = _send(claim)
    if sent.outcome == Outcome.FAILED:
        # The URL may carry a token in its query: never logged.
        log.warning(
            "webhook delivery %s attempt %s failed: %s", delivery_id, claim.number, sent.error
        )
    return _record(claim, sent, started)


def delivery_replay(*, delivery: WebhookDelivery, now: datetime | None = None) -> bool:
    """Send a finished delivery again, the same message (``webhook-id`` and body), in a new
    round of attempts; False when it is still in progress (nothing to replay yet)."""
    now = now or timezone.now()
    return bool(
        WebhookDelivery.objects.filter(
            pk=delivery.pk, status__in=(Status.SUCCEEDED, Status.FAILED)
        ).update(status=Status.PENDING, round_attempts=0, next_attempt_at=now, updated_at=now)
    )


def deliveries_due(*, now: datetime, limit: int = 500) -> list[tuple[int, int]]:
    """``(tenant id, delivery id)`` of unfinished deliveries past their time: pending ones
    whose dispatch was lost (a restart, an in-process timer) and attempts whose process
    died. Oldest first."""
    # unscoped: the sweeper serves every tenant; each delivery is attempted in its scope.
    rows = (
        WebhookDelivery.unscoped.filter(
            status__in=(Status.PENDING, Status.DELIVERING), next_attempt_at__lte=now
        )
        .order_by("next_attempt_at")
        .values_list("tenant_id", "pk")[:limit]
    )
    return list(rows)
