"""The tenant's alert webhook: its signing secret, and each event's delivery (docs/alerts.md).

An alert has two events, ``alert.raised`` and (once cleared) ``alert.cleared``. Each is one
message: one ``webhook-id`` (``alert_<id>_raised``), so a receiver can deduplicate, sent
until one attempt succeeds, at most ``MAX_ATTEMPTS`` times, retries in later evaluation
rounds after ``RETRY_AFTER``. Every attempt is an entry of ``Alert.deliveries``::

    {"event", "id", "attempt", "at", "status", "http_status", "error"}

``status`` is ``sending`` while in flight, then ``delivered`` or ``failed``; ``skipped``
when the tenant had no webhook configured at the time (never sent later). An attempt is
claimed under the alert's row lock before the POST, so with several server processes
evaluating, an event is sent by one of them at a time and never again once delivered.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import secrets
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone

from analytics.models import Alert
from analytics.webhook_post import WebhookStatusError, standard_webhook_post
from tools.webhooks import WebhookError, address_refusal
from voice_platform.crypto import DecryptionError, decrypt_str, encrypt_str
from voice_platform.tenancy.models import Tenant
from voice_platform.tenancy.scope import tenant_scope

log = logging.getLogger(__name__)

RAISED = "alert.raised"
CLEARED = "alert.cleared"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = 32
TIMEOUT_SECONDS = 5.0
MAX_ATTEMPTS = 3
# Wait after the n-th failed attempt before the next one (rounds come every
# ALERT_EVALUATE_INTERVAL, so the real wait is up to one interval longer).
RETRY_AFTER = (timedelta(seconds=60), timedelta(seconds=300))
# An attempt still "sending" after this long died with its process: it counts as failed.
STALE_SENDING = timedelta(seconds=TIMEOUT_SECONDS + 60)
# Deliveries of alerts cleared longer ago than this are not retried any more.
RETRY_HORIZON = timedelta(hours=1)


# --- the secret ------------------------------------------------------------------------------


def alert_webhook_secret_generate() -> str:
    """A new signing secret in the Standard Webhooks form: ``whsec_`` + base64 of 32 bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def alert_webhook_secret_valid(secret: str) -> bool:
    """Whether ``secret`` is a usable ``whsec_`` secret (base64 of at least 24 bytes)."""
    if not secret.startswith(SECRET_PREFIX):
        return False
    try:
        raw = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        return False
    return len(raw) >= 24


def alert_webhook_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the alert webhook, or None. What can be told without a DNS
    lookup (a host name is checked when called, as for webhook tools)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return "only https:// URLs are called"
    if parts.username or parts.password:
        return "credentials in the URL are not allowed"
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return None  # a host name
    allowed = [
        ipaddress.ip_network(n, strict=False) for n in settings.TOOL_WEBHOOK_ALLOWED_NETWORKS
    ]
    return address_refusal(address, allowed)


def tenant_set_alert_webhook_secret(*, tenant: Tenant, secret: str) -> Tenant:
    """Store (or with an empty string, clear) the tenant's alert webhook secret, encrypted."""
    tenant.alert_webhook_secret_encrypted = encrypt_str(secret) if secret else ""
    tenant.save(update_fields=["alert_webhook_secret_encrypted"])
    return tenant


def tenant_alert_webhook_secret(*, tenant: Tenant) -> str:
    """The tenant's alert webhook secret in plain text, or "" when none is set."""
    if not tenant.alert_webhook_secret_encrypted:
        return ""
    return decrypt_str(tenant.alert_webhook_secret_encrypted)


# --- deliveries ------------------------------------------------------------------------------


def message_id(alert: Alert, event: str) -> str:
    """The event's ``webhook-id``: the same for every attempt, so receivers can deduplicate."""
    return f"alert_{alert.pk}_{event.removeprefix('alert.')}"


def alert_payload(*, alert: Alert, event: str, at: datetime) -> dict[str, Any]:
    """The JSON body of ``event`` (docs/alerts.md)."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "type": event,
        "timestamp": iso(at),
        "data": {
            "id": alert.pk,
            "tenant": alert.tenant.slug,
            "scope": alert.scope,
            "agent_id": alert.agent_id,
            "kind": alert.kind,
            "status": alert.status,
            "raised_at": iso(alert.raised_at),
            "cleared_at": iso(alert.cleared_at),
            "window_seconds": alert.window_seconds,
            "threshold": alert.threshold,
            "events": alert.events,
            "failures": alert.failures,
            "error_rate": alert.error_rate,
            "peak_error_rate": alert.peak_error_rate,
            "last_error_rate": alert.last_error_rate,
        },
    }


def alert_events(alert: Alert) -> list[str]:
    """The events ``alert`` has had so far."""
    return [RAISED, CLEARED] if alert.status == Alert.Status.CLEARED else [RAISED]


def _when(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["at"])


def delivery_due(deliveries: list[dict[str, Any]], event: str, now: datetime) -> bool:
    """Whether ``event`` should be attempted now, given the alert's attempts so far."""
    attempts = [d for d in deliveries if d.get("event") == event]
    if any(d["status"] in ("delivered", "skipped") for d in attempts):
        return False
    if len(attempts) >= MAX_ATTEMPTS:
        return False  # given up; the attempts stay visible in the admin
    if not attempts:
        return True
    last = attempts[-1]
    if last["status"] == "sending":
        return now - _when(last) >= STALE_SENDING
    return now - _when(last) >= RETRY_AFTER[min(len(attempts), len(RETRY_AFTER)) - 1]


def alert_deliveries_due(*, tenant: Tenant, now: datetime) -> list[tuple[int, str]]:
    """``(alert id, event)`` of the tenant's events still to be (re)tried: open alerts and
    those cleared within ``RETRY_HORIZON`` (a handful of rows)."""
    recent = Alert.objects.filter(
        Q(status=Alert.Status.OPEN) | Q(cleared_at__gte=now - RETRY_HORIZON), tenant=tenant
    )
    return [
        (alert.pk, event)
        for alert in recent.only("pk", "status", "deliveries")
        for event in alert_events(alert)
        if delivery_due(alert.deliveries, event, now)
    ]


@dataclass(frozen=True)
class _Claim:
    attempt: int
    url: str
    secret: str
    msg_id: str
    body: bytes


def _claim(*, alert_id: int, event: str, now: datetime) -> _Claim | None:
    """Record a "sending" attempt under the row lock, or None when nothing is to be sent."""
    with transaction.atomic():
        # The lock orders processes racing for the same event: the second one sees the
        # first one's "sending" (or "delivered") entry and stands back.
        alert = Alert.objects.select_for_update().select_related("tenant").get(pk=alert_id)
        if not delivery_due(alert.deliveries, event, now):
            return None
        tenant = alert.tenant
        entry: dict[str, Any] = {
            "event": event,
            "id": message_id(alert, event),
            "attempt": 1 + sum(d.get("event") == event for d in alert.deliveries),
            "at": now.isoformat(),
            "status": "sending",
            "http_status": None,
            "error": "",
        }
        claim: _Claim | None = None
        if not tenant.alert_webhook_url:
            entry.update(status="skipped", error="no alert webhook configured")
        else:
            try:
                secret = tenant_alert_webhook_secret(tenant=tenant)
            except DecryptionError:
                secret = ""
            if not secret:
                entry.update(status="failed", error="the alert webhook has no usable secret")
            else:
                body = json.dumps(
                    alert_payload(alert=alert, event=event, at=now), separators=(",", ":")
                ).encode()
                claim = _Claim(
                    entry["attempt"], tenant.alert_webhook_url, secret, entry["id"], body
                )
        alert.deliveries = [*alert.deliveries, entry]
        alert.save(update_fields=["deliveries"])
        return claim


def _record(*, alert_id: int, event: str, attempt: int, result: dict[str, Any]) -> None:
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert_id)
        for entry in alert.deliveries:
            if entry.get("event") == event and entry.get("attempt") == attempt:
                entry.update(result)
        alert.save(update_fields=["deliveries"])


def alert_deliver(
    *, alert_id: int, event: str, now: datetime | None = None
) -> dict[str, Any] | None:
    """Send ``event`` of the alert if it is due (in the alert's tenant scope); the attempt
    recorded, or None when none was due. Never raises for a failed delivery."""
    now = now or timezone.now()
    claim = _claim(alert_id=alert_id, event=event, now=now)
    if claim is None:
        return None
    result: dict[str, Any] = {"error": ""}
    try:
        status = standard_webhook_post(
            url=claim.url,
            secret=claim.secret,
            msg_id=claim.msg_id,
            body=claim.body,
            timeout=TIMEOUT_SECONDS,
        )
        result.update(status="delivered", http_status=status)
    except WebhookError as exc:
        # The URL is the tenant's and may carry a token in its query: not logged.
        result.update(
            status="failed",
            http_status=exc.status if isinstance(exc, WebhookStatusError) else None,
            error=str(exc)[:500],
        )
        log.warning(
            "alert %s: %s delivery attempt %s failed: %s", alert_id, event, claim.attempt, exc
        )
    _record(alert_id=alert_id, event=event, attempt=claim.attempt, result=result)
    return {"event": event, "id": claim.msg_id, "attempt": claim.attempt, **result}


# --- off the database thread ----------------------------------------------------------------

# Evaluation runs in the server's database thread, which every session's ORM work shares:
# a POST waiting up to TIMEOUT_SECONDS must not hold it, so deliveries run here.
# A few threads: alerts come in bulk exactly when something is wrong everywhere (one slow
# endpoint must not hold every other tenant's), and a delivery already queued or running
# here is not queued again by the next round (its claim would refuse it anyway).
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="alert-webhooks")
_queued: set[tuple[int, str]] = set()
_queued_lock = threading.Lock()


def _deliver_in_thread(tenant_id: int, alert_id: int, event: str) -> None:
    try:
        with tenant_scope(tenant_id):
            alert_deliver(alert_id=alert_id, event=event)
    except Exception:  # a database hiccup: the next round retries what is still due
        log.exception("alert %s: %s delivery failed", alert_id, event)
    finally:
        with _queued_lock:
            _queued.discard((alert_id, event))
        connections.close_all()  # this thread's connections only


def alert_deliver_later(tenant_id: int, alert_id: int, event: str) -> Future[None] | None:
    """Queue the delivery on the process's delivery threads (None: already queued)."""
    with _queued_lock:
        if (alert_id, event) in _queued:
            return None
        _queued.add((alert_id, event))
    return _pool.submit(_deliver_in_thread, tenant_id, alert_id, event)
