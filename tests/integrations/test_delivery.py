"""Delivery against a real local HTTPS receiver: Standard Webhooks signatures, retries with
backoff, the final states, replay, the outbound-address rules, the sweeper."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from standardwebhooks import Webhook

from integrations import dispatch
from integrations.delivery import (
    deliveries_due,
    delivery_attempt,
    delivery_replay,
    retry_delay,
)
from integrations.events import emit
from integrations.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.factories import WebhookDeliveryFactory, WebhookEndpointFactory
from tests.integrations.conftest import answers, bodies, delivery, make_endpoint
from voice_platform.tenancy.scope import tenant_scope

pytestmark = pytest.mark.django_db

EVENT = {"type": "session.started", "timestamp": "2026-01-01T00:00:00+00:00", "data": {"x": 1}}


def queue(tenant: Any, event_type: str = "session.started", **kwargs: Any) -> WebhookDelivery:
    kwargs.setdefault("payload", EVENT)
    (made,) = emit(tenant_id=tenant.pk, event_type=event_type, subject="s1", **kwargs)
    return made


def attempt(tenant: Any, pk: int, now: Any = None) -> Any:
    with tenant_scope(tenant.pk):
        return delivery_attempt(delivery_id=pk, now=now)


def attempts(pk: int) -> list[WebhookAttempt]:
    return list(WebhookAttempt.unscoped.filter(delivery_id=pk).order_by("number"))


def test_the_signature_verifies_with_the_standardwebhooks_package(alice, webhook_receiver):
    _endpoint, secret = make_endpoint(alice.tenant, webhook_receiver.url())
    made = queue(alice.tenant)
    result = attempt(alice.tenant, made.pk)
    assert result.outcome == "succeeded"
    assert result.status_code == 200
    (request,) = webhook_receiver.requests
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert Webhook(secret).verify(request["body"], headers) == EVENT
    assert headers["webhook-id"] == made.msg_id
    assert headers["content-type"] == "application/json"
    # Another secret does not verify: the signature is over this body with this secret.
    with pytest.raises(Exception, match="No matching signature"):
        Webhook("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=").verify(request["body"], headers)
    stored = delivery(made.pk)
    assert stored.status == "succeeded"
    assert stored.next_attempt_at is None
    assert stored.last_status_code == 200
    (only,) = attempts(made.pk)
    assert (only.number, only.outcome, only.status_code, only.error) == (1, "succeeded", 200, "")
    assert only.duration_ms is not None


def test_the_retry_schedule_grows_exponentially_to_its_cap(settings):
    settings.WEBHOOK_RETRY_BASE, settings.WEBHOOK_RETRY_CAP = 5, 21_600
    assert [retry_delay(n, jitter=False) for n in range(1, 8)] == [
        5, 30, 180, 1080, 6480, 21600, 21600,
    ]  # fmt: skip
    for n in range(1, 8):
        base = retry_delay(n, jitter=False)
        assert base * 0.8 <= retry_delay(n) <= base * 1.2


def test_a_failing_receiver_is_retried_with_backoff_until_it_succeeds(alice, webhook_receiver):
    webhook_receiver.handler = answers(500, 503, 200)
    make_endpoint(alice.tenant, webhook_receiver.url())
    made = queue(alice.tenant)
    now = timezone.now()

    first = attempt(alice.tenant, made.pk, now)
    assert (first.outcome, first.status_code) == ("failed", 500)
    assert 4 <= first.retry_after_seconds <= 6  # 5 s +-20%
    due = delivery(made.pk).next_attempt_at
    assert delivery(made.pk).status == "pending"
    assert timedelta(seconds=3.9) <= due - now <= timedelta(seconds=7)
    # Not before its time: a wake-up too early attempts nothing.
    assert attempt(alice.tenant, made.pk, due - timedelta(seconds=1)) is None
    assert len(webhook_receiver.requests) == 1

    second = attempt(alice.tenant, made.pk, due)
    assert (second.outcome, second.status_code) == ("failed", 503)
    assert 24 <= second.retry_after_seconds <= 36  # 30 s +-20%
    assert second.retry_after_seconds > first.retry_after_seconds

    third = attempt(alice.tenant, made.pk, delivery(made.pk).next_attempt_at)
    assert (third.outcome, third.status_code) == ("succeeded", 200)
    stored = delivery(made.pk)
    assert (stored.status, stored.attempt_count, stored.next_attempt_at) == ("succeeded", 3, None)
    assert [(a.number, a.status_code, a.outcome) for a in attempts(made.pk)] == [
        (1, 500, "failed"), (2, 503, "failed"), (3, 200, "succeeded"),
    ]  # fmt: skip
    assert [a.retry_after_seconds is not None for a in attempts(made.pk)] == [True, True, False]
    # Every attempt is the same message: one webhook-id, the same body.
    assert {r["headers"]["webhook-id"] for r in webhook_receiver.requests} == {made.msg_id}
    assert len({r["body"] for r in webhook_receiver.requests}) == 1


def test_a_receiver_failing_every_time_fails_the_delivery_after_max_attempts(
    alice, webhook_receiver, settings
):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    webhook_receiver.handler = answers(404)  # a 4xx is retried too (docs/webhooks.md)
    make_endpoint(alice.tenant, webhook_receiver.url())
    made = queue(alice.tenant)
    results = []
    for _ in range(3):
        results.append(attempt(alice.tenant, made.pk, delivery(made.pk).next_attempt_at))
    assert [r.status_code for r in results] == [404, 404, 404]
    assert results[-1].retry_after_seconds is None
    stored = delivery(made.pk)
    assert (stored.status, stored.next_attempt_at) == ("failed", None)
    assert stored.last_error == "webhook answered HTTP 404"
    assert attempt(alice.tenant, made.pk, timezone.now() + timedelta(days=1)) is None
    assert len(webhook_receiver.requests) == 3


def test_a_timeout_is_recorded_and_retried(alice, webhook_receiver, settings):
    settings.WEBHOOK_TIMEOUT = 0.3

    def slow(request: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        import time

        time.sleep(1.0)
        return 200, {}, b""

    webhook_receiver.handler = slow
    make_endpoint(alice.tenant, webhook_receiver.url())
    made = queue(alice.tenant)
    result = attempt(alice.tenant, made.pk)
    assert result.outcome == "failed"
    assert result.status_code is None
    assert "did not answer within 0.3s" in result.error
    assert result.retry_after_seconds is not None
    assert delivery(made.pk).status == "pending"


def test_410_gone_fails_the_delivery_and_disables_the_endpoint(alice, webhook_receiver):
    webhook_receiver.handler = answers(410)
    endpoint, _ = make_endpoint(alice.tenant, webhook_receiver.url())
    made = queue(alice.tenant)
    result = attempt(alice.tenant, made.pk)
    assert (result.status_code, result.retry_after_seconds) == (410, None)
    assert delivery(made.pk).status == "failed"
    endpoint = WebhookEndpoint.unscoped.get(pk=endpoint.pk)
    assert endpoint.enabled is False
    assert "410" in endpoint.disabled_reason
    # A disabled endpoint gets no new events.
    assert emit(tenant_id=alice.tenant.pk, event_type="session.started", payload=EVENT) == []


def test_a_loopback_address_is_refused_at_send_without_a_request(alice, webhook_receiver, settings):
    """The endpoint was saved while loopback was allowlisted; it is not any more: the
    attempt is recorded as refused, no request is made, and it is not retried."""
    make_endpoint(alice.tenant, webhook_receiver.url())
    settings.TOOL_WEBHOOK_ALLOWED_NETWORKS = []
    made = queue(alice.tenant)
    result = attempt(alice.tenant, made.pk)
    assert result.outcome == "failed"
    assert result.status_code is None
    assert result.error.startswith("refused: loopback address 127.0.0.1")
    assert result.retry_after_seconds is None
    assert webhook_receiver.requests == []
    stored = delivery(made.pk)
    assert stored.status == "failed"
    assert stored.last_error.startswith("refused")
    (only,) = attempts(made.pk)
    assert only.error.startswith("refused: loopback")


@pytest.mark.parametrize(
    "url",
    ["https://localhost/hook", "https://10.1.2.3/hook", "https://169.254.169.254/latest"],
)
def test_private_addresses_stored_anyhow_are_refused_at_send(alice, url):
    """A URL written past the checks (a row from before them, DNS re-pointed since)."""
    endpoint = WebhookEndpointFactory(tenant=alice.tenant, url=url)
    made = queue(alice.tenant)
    assert made.endpoint_id == endpoint.pk
    result = attempt(alice.tenant, made.pk)
    assert result.error.startswith("refused: ")
    assert "address" in result.error
    assert "not allowed" in result.error


def test_replay_sends_the_same_message_again_as_new_attempts(alice, webhook_receiver):
    make_endpoint(alice.tenant, webhook_receiver.url())
    made = queue(alice.tenant)
    attempt(alice.tenant, made.pk)
    with tenant_scope(alice.tenant.pk):
        assert delivery_replay(delivery=delivery(made.pk)) is True
        assert delivery_replay(delivery=delivery(made.pk)) is False  # pending again
    assert delivery(made.pk).status == "pending"
    result = attempt(alice.tenant, made.pk)
    assert (result.number, result.outcome) == (2, "succeeded")
    first, second = webhook_receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == made.msg_id
    assert first["body"] == second["body"]
    assert [a.number for a in attempts(made.pk)] == [1, 2]


def test_replay_of_a_failed_delivery_gets_a_full_round_of_attempts(
    alice, webhook_receiver, settings
):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    webhook_receiver.handler = answers(500, 500, 500, 200)
    make_endpoint(alice.tenant, webhook_receiver.url())
    made = queue(alice.tenant)
    attempt(alice.tenant, made.pk)
    attempt(alice.tenant, made.pk, delivery(made.pk).next_attempt_at)
    assert delivery(made.pk).status == "failed"
    with tenant_scope(alice.tenant.pk):
        delivery_replay(delivery=delivery(made.pk))
    third = attempt(alice.tenant, made.pk)
    assert third.retry_after_seconds is not None  # round 2, attempt 1 of 2: retried
    fourth = attempt(alice.tenant, made.pk, delivery(made.pk).next_attempt_at)
    assert (fourth.number, fourth.outcome) == (4, "succeeded")


def test_an_attempt_whose_process_died_is_failed_and_retried(alice, webhook_receiver):
    make_endpoint(alice.tenant, webhook_receiver.url())
    made = queue(alice.tenant)
    long_ago = timezone.now() - timedelta(hours=1)
    # An attempt claimed an hour ago and never recorded: its process died mid-POST.
    WebhookDelivery.unscoped.filter(pk=made.pk).update(
        status="delivering", attempt_count=1, round_attempts=1,
        next_attempt_at=long_ago + timedelta(seconds=40),
    )  # fmt: skip
    WebhookAttempt.unscoped.create(
        tenant=alice.tenant, delivery_id=made.pk, number=1, started_at=long_ago
    )
    assert (alice.tenant.pk, made.pk) in deliveries_due(now=timezone.now())
    result = attempt(alice.tenant, made.pk)
    assert (result.number, result.outcome) == (2, "succeeded")
    lost, sent = attempts(made.pk)
    assert lost.outcome == "failed"
    assert "stopped" in lost.error
    assert sent.outcome == "succeeded"
    assert deliveries_due(now=timezone.now()) == []


def test_an_attempt_in_flight_is_not_attempted_twice(alice, webhook_receiver):
    make_endpoint(alice.tenant, webhook_receiver.url())
    made = queue(alice.tenant)
    WebhookDelivery.unscoped.filter(pk=made.pk).update(
        status="delivering", next_attempt_at=timezone.now() + timedelta(seconds=30)
    )
    assert attempt(alice.tenant, made.pk) is None
    assert webhook_receiver.requests == []


def test_the_sweeper_wakes_overdue_deliveries_only(alice, charlie, monkeypatch):
    woken: list[tuple[int, int]] = []
    monkeypatch.setattr(
        dispatch,
        "delivery_schedule",
        lambda *, tenant_id, delivery_id, countdown=0.0: woken.append((tenant_id, delivery_id)),
    )
    now = timezone.now()
    overdue = WebhookDeliveryFactory(
        tenant=alice.tenant, status="pending", next_attempt_at=now - timedelta(minutes=5)
    )
    foreign = WebhookDeliveryFactory(
        tenant=charlie.tenant, status="delivering", next_attempt_at=now - timedelta(minutes=5)
    )
    WebhookDeliveryFactory(
        tenant=alice.tenant, status="pending", next_attempt_at=now + timedelta(minutes=5)
    )
    WebhookDeliveryFactory(tenant=alice.tenant, status="succeeded", next_attempt_at=None)
    assert dispatch.sweep() == 2
    assert sorted(woken) == sorted([(alice.tenant.pk, overdue.pk), (charlie.tenant.pk, foreign.pk)])


def test_events_go_to_subscribed_enabled_endpoints_of_the_tenant_only(alice, charlie):
    everything = WebhookEndpointFactory(tenant=alice.tenant)
    sessions_only = WebhookEndpointFactory(
        tenant=alice.tenant, event_types=["session.started", "session.ended"]
    )
    WebhookEndpointFactory(tenant=alice.tenant, enabled=False)
    WebhookEndpointFactory(tenant=charlie.tenant)
    started = emit(tenant_id=alice.tenant.pk, event_type="session.started", payload=EVENT)
    assert {d.endpoint_id for d in started} == {everything.pk, sessions_only.pk}
    assert len({d.msg_id for d in started}) == 2  # one message per endpoint
    alerts = emit(tenant_id=alice.tenant.pk, event_type="alert.raised", payload=EVENT)
    assert {d.endpoint_id for d in alerts} == {everything.pk}


def test_a_deferred_payload_whose_subject_is_gone_fails_without_a_request(alice, webhook_receiver):
    make_endpoint(alice.tenant, webhook_receiver.url())
    (made,) = emit(
        tenant_id=alice.tenant.pk,
        event_type="session.ended",
        subject="8a3b8f4e-0000-4000-8000-000000000000",
    )
    assert attempt(alice.tenant, made.pk) is None
    stored = delivery(made.pk)
    assert stored.status == "failed"
    assert "no longer exists" in stored.last_error
    assert webhook_receiver.requests == []
    assert bodies(webhook_receiver) == []
