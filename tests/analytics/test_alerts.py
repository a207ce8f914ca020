"""Error-rate alerts: raised once, signed webhook, rate-limited, cleared; isolation."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from standardwebhooks import Webhook

from analytics import alerts
from analytics.alert_webhooks import (
    alert_deliver,
    alert_webhook_secret_generate,
    tenant_set_alert_webhook_secret,
)
from analytics.alerts import Deliver, Evaluation, alerts_evaluate
from analytics.models import Alert
from sessions.models import VoiceSession
from tests.factories import AgentFactory, ToolCallRecordFactory, VoiceSessionFactory
from tests.tools.conftest import (
    WebhookReceiver,
    webhook_receiver,  # noqa: F401 (a fixture, used below)
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> WebhookReceiver:
    """tests/tools' HTTPS receiver (allowlisted and trusted as a webhook tool's would be)."""
    found: WebhookReceiver = request.getfixturevalue("webhook_receiver")
    return found


@pytest.fixture(autouse=True)
def alert_settings(settings: Any) -> None:
    settings.ALERT_WINDOW_SECONDS = 300
    settings.ALERT_MIN_EVENTS = 4
    settings.ALERT_ERROR_RATE = 0.5
    settings.ALERT_CLEAR_RATE = 0.25
    settings.ALERT_COOLDOWN_SECONDS = 600


def outcomes(agent: Any, at: datetime, *, ok: int = 0, failed: int = 0) -> None:
    """Sessions of ``agent`` that ended (``ok``) or failed at ``at``."""
    for status, count in ((VoiceSession.Status.ENDED, ok), (VoiceSession.Status.FAILED, failed)):
        for _ in range(count):
            VoiceSessionFactory(tenant=agent.tenant, agent=agent, status=status, ended_at=at)


def inline(now: datetime) -> Deliver:
    """Deliver at once at ``now``, in the evaluator's scope (a server uses a thread)."""
    return lambda tenant_id, alert_id, event: alert_deliver(alert_id=alert_id, event=event, now=now)


def evaluate(now: datetime, tenant: Any) -> Evaluation:
    return alerts_evaluate(now=now, deliver=inline(now))[tenant.pk]


def with_webhook(tenant: Any, url: str) -> str:
    secret = alert_webhook_secret_generate()
    tenant.alert_webhook_url = url
    tenant.save(update_fields=["alert_webhook_url"])
    tenant_set_alert_webhook_secret(tenant=tenant, secret=secret)
    return secret


def verified(secret: str, request: dict[str, Any]) -> Any:
    """What a receiver does: raises unless the signature verifies."""
    return Webhook(secret).verify(request["body"], request["headers"])


def test_alerts_raise_one_alert_logged_and_signed(
    alice: Any, alice_agent: Any, receiver: WebhookReceiver, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING)
    secret = with_webhook(alice.tenant, receiver.url("/alerts"))
    now = timezone.now()
    outcomes(alice_agent, now - timedelta(seconds=30), ok=2, failed=2)
    done = now - timedelta(seconds=10)
    for status in ("succeeded", "timeout", "rejected", "cancelled"):  # the last two: no outcome
        ToolCallRecordFactory(
            tenant=alice.tenant, agent=alice_agent, status=status, finished_at=done
        )
    outcomes(alice_agent, now - timedelta(seconds=400), failed=5)  # before the window

    raised = evaluate(now, alice.tenant).raised

    assert [(a.scope, a.events, a.failures, a.error_rate) for a in raised] == [
        (f"agent:{alice_agent.pk}", 6, 3, 0.5)
    ]  # the tenant's scope stays quiet: the incident has its alert
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "error-rate alert raised" in errors[0]
    assert f"agent:{alice_agent.pk}" in errors[0]
    assert secret not in caplog.text
    [request] = receiver.requests
    assert request["path"] == "/alerts"
    body = verified(secret, request)
    assert body["type"] == "alert.raised"
    assert body["data"]["id"] == raised[0].pk
    assert body["data"]["failures"] == 3
    assert request["headers"]["webhook-id"] == f"alert_{raised[0].pk}_raised"
    with pytest.raises(Exception, match="signature"):
        Webhook(alert_webhook_secret_generate()).verify(request["body"], request["headers"])

    # Worse still: the same incident, no second alert, no second webhook; the peak follows.
    outcomes(alice_agent, now, failed=4)
    again = evaluate(now + timedelta(seconds=30), alice.tenant)
    assert again.raised == []
    assert len(receiver.requests) == 1
    alert = Alert.unscoped.get()
    assert alert.status == Alert.Status.OPEN
    assert alert.peak_error_rate == alert.last_error_rate == 0.7
    [delivery] = alert.deliveries
    assert delivery["status"] == "delivered"
    assert delivery["http_status"] == 200
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


def test_alerts_racing_evaluators_raise_one(
    alice: Any,
    alice_agent: Any,
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: Any,
) -> None:
    caplog.set_level(logging.ERROR)
    with_webhook(alice.tenant, receiver.url())
    now = timezone.now()
    outcomes(alice_agent, now, failed=5)

    first = evaluate(now, alice.tenant)
    # A second process that read "no open alert" before the first one's insert landed.
    monkeypatch.setattr(alerts, "open_alerts", lambda *, tenant: {})
    second = evaluate(now, alice.tenant)

    assert len(first.raised) == 1
    assert second.raised == []
    assert Alert.unscoped.count() == 1  # neither the agent's nor the tenant's scope again
    assert len(caplog.records) == 1
    assert len(receiver.requests) == 1
    assert len(Alert.unscoped.get().deliveries) == 1


def test_alerts_hysteresis_clear_and_cooldown(
    alice: Any, alice_agent: Any, receiver: WebhookReceiver
) -> None:
    secret = with_webhook(alice.tenant, receiver.url())
    t0 = timezone.now()
    outcomes(alice_agent, t0, ok=1, failed=4)
    [alert] = evaluate(t0, alice.tenant).raised

    # 2 of 6 failed: under the raise threshold, over the clear one: still open.
    later = t0 + timedelta(seconds=310)
    outcomes(alice_agent, later, ok=4, failed=2)
    assert evaluate(later, alice.tenant).cleared == []
    alert.refresh_from_db()
    assert (alert.status, round(alert.last_error_rate, 2), alert.peak_error_rate) == (
        "open", 0.33, 0.8
    )  # fmt: skip

    # 1 of 8 failed: recovered.
    t1 = t0 + timedelta(seconds=620)
    outcomes(alice_agent, t1, ok=7, failed=1)
    assert [a.pk for a in evaluate(t1, alice.tenant).cleared] == [alert.pk]
    alert.refresh_from_db()
    assert (alert.status, alert.cleared_at) == ("cleared", t1)
    raised, cleared = (verified(secret, r) for r in receiver.requests)
    assert (raised["type"], cleared["type"]) == ("alert.raised", "alert.cleared")
    assert cleared["data"]["cleared_at"] == t1.isoformat()

    # It flaps straight back: within the cooldown, no new alert and no webhook.
    t2 = t1 + timedelta(seconds=310)
    outcomes(alice_agent, t2, failed=6)
    assert evaluate(t2, alice.tenant).raised == []
    assert len(receiver.requests) == 2
    # Failing on after the cooldown: a new incident.
    t3 = t1 + timedelta(seconds=610)
    outcomes(alice_agent, t3, failed=6)
    assert len(evaluate(t3, alice.tenant).raised) == 1
    assert len(receiver.requests) == 3


def test_alerts_quiet_window_clears(alice: Any, alice_agent: Any) -> None:
    now = timezone.now()
    outcomes(alice_agent, now, failed=4)
    [alert] = evaluate(now, alice.tenant).raised
    # Traffic stopped: too few outcomes to judge, but none failed.
    outcomes(alice_agent, now + timedelta(seconds=400), ok=1)
    assert [a.pk for a in evaluate(now + timedelta(seconds=400), alice.tenant).cleared] == [
        alert.pk
    ]
    assert Alert.unscoped.get().deliveries[-1]["status"] == "skipped"  # no webhook set


def test_alerts_failed_delivery_retried_in_a_later_round_until_delivered_once(
    alice: Any, alice_agent: Any, receiver: WebhookReceiver
) -> None:
    with_webhook(alice.tenant, receiver.url())
    answers = iter([500, 200])
    receiver.handler = lambda request: (next(answers), {}, b"")
    now = timezone.now()
    outcomes(alice_agent, now, failed=4)
    evaluate(now, alice.tenant)
    evaluate(now + timedelta(seconds=10), alice.tenant)  # too soon to retry
    assert len(receiver.requests) == 1
    evaluate(now + timedelta(seconds=70), alice.tenant)
    evaluate(now + timedelta(seconds=200), alice.tenant)  # delivered: never again

    first, second = receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    deliveries = Alert.unscoped.get().deliveries
    assert [(d["attempt"], d["status"], d["http_status"]) for d in deliveries] == [
        (1, "failed", 500),
        (2, "delivered", 200),
    ]


def test_alerts_private_webhook_address_refused(
    alice: Any, alice_agent: Any, settings: Any
) -> None:
    settings.TOOL_WEBHOOK_ALLOWED_NETWORKS = []
    with_webhook(alice.tenant, "https://127.0.0.1:9/alerts")
    now = timezone.now()
    outcomes(alice_agent, now, failed=4)
    assert len(evaluate(now, alice.tenant).raised) == 1  # delivery failing breaks nothing
    [delivery] = Alert.unscoped.get().deliveries
    assert delivery["status"] == "failed"
    assert "loopback address 127.0.0.1 is not allowed" in delivery["error"]


def test_alerts_tenant_scope_catches_failures_spread_over_agents(alice: Any) -> None:
    now = timezone.now()
    for _ in range(3):  # each agent below the minimum of outcomes, together over it
        outcomes(AgentFactory(tenant=alice.tenant), now, ok=1, failed=1)
    [alert] = evaluate(now, alice.tenant).raised
    assert (alert.scope, alert.agent_id, alert.events, alert.failures) == ("tenant", None, 6, 3)


def test_alerts_other_tenants_failures_never_raise_ours(
    alice: Any, charlie: Any, alice_agent: Any, charlie_agent: Any,
    receiver: WebhookReceiver,
) -> None:  # fmt: skip
    with_webhook(alice.tenant, receiver.url())
    now = timezone.now()
    outcomes(alice_agent, now, ok=4)
    outcomes(charlie_agent, now, failed=8)
    results = alerts_evaluate(now=now, deliver=inline(now))
    assert results[alice.tenant.pk].raised == []
    assert [a.tenant_id for a in results[charlie.tenant.pk].raised] == [charlie.tenant.pk]
    assert receiver.requests == []  # alice's webhook: nothing of charlie's
