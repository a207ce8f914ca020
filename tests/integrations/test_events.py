"""Where events come from: sessions (opened, ended by their connection, by REST, by the
reaper), tool calls reaching a final status, alerts raised and cleared."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from analytics.alerts import alerts_evaluate
from integrations.delivery import delivery_attempt, delivery_replay
from integrations.models import WebhookDelivery
from sessions.models import VoiceSession
from sessions.reaper import voice_sessions_reap_detached
from sessions.services import voice_session_end, voice_session_end_by_api
from tests.factories import (
    TranscriptEntryFactory,
    VoiceSessionFactory,
    WebhookEndpointFactory,
)
from tests.integrations.conftest import delivery, make_endpoint
from tests.tools.conftest import admit_call, allow, make_session
from tools.outcome import tool_call_finish_early
from voice_platform.tenancy.scope import tenant_scope

pytestmark = pytest.mark.django_db


def queued(event_type: str) -> list[WebhookDelivery]:
    return list(WebhookDelivery.unscoped.filter(event_type=event_type).order_by("id"))


def live_session(agent: Any) -> VoiceSession:
    session = VoiceSessionFactory.create(
        tenant=agent.tenant, agent=agent, status=VoiceSession.Status.ACTIVE,
        connection_channel="chan-1",
    )  # fmt: skip
    return session


def test_a_session_ended_by_its_connection_is_reported_at_once(alice, alice_agent):
    WebhookEndpointFactory(tenant=alice.tenant)
    session = live_session(alice_agent)
    with tenant_scope(alice.tenant.pk):
        assert voice_session_end(
            session_id=session.pk, channel_name="chan-1", status=VoiceSession.Status.ENDED,
            reason="client_closed", progress=None,
        )  # fmt: skip
        # Ending twice is one event: the second end changes nothing.
        voice_session_end(
            session_id=session.pk, channel_name=None, status=VoiceSession.Status.ENDED,
            reason="client_closed", progress=None,
        )  # fmt: skip
    (ended,) = queued("session.ended")
    assert ended.subject == str(session.pk)
    assert ended.payload is None


def test_a_session_ended_by_rest_waits_for_its_connections_last_flush(alice, alice_agent):
    WebhookEndpointFactory(tenant=alice.tenant)
    session = live_session(alice_agent)
    before = timezone.now()
    with tenant_scope(alice.tenant.pk):
        voice_session_end_by_api(session=session)
    (ended,) = queued("session.ended")
    assert ended.next_attempt_at - before >= timedelta(seconds=3)
    # Not due before then: the connection's last transcript lands meanwhile.
    with tenant_scope(alice.tenant.pk):
        assert delivery_attempt(delivery_id=ended.pk, now=before) is None


def test_a_session_the_reaper_ends_is_reported(alice, alice_agent):
    WebhookEndpointFactory(tenant=alice.tenant)
    VoiceSessionFactory(
        tenant=alice.tenant, agent=alice_agent, status=VoiceSession.Status.RECONNECTING,
        client_detached_at=timezone.now() - timedelta(hours=1),
    )  # fmt: skip
    assert voice_sessions_reap_detached() == 1
    (ended,) = queued("session.ended")
    assert ended.tenant_id == alice.tenant.pk


def test_the_report_is_built_at_the_first_attempt_then_frozen(alice, alice_agent, webhook_receiver):
    make_endpoint(alice.tenant, webhook_receiver.url())
    session = live_session(alice_agent)
    with tenant_scope(alice.tenant.pk):
        voice_session_end_by_api(session=session)
    # The connection's last words, stored after the end (its final flush).
    TranscriptEntryFactory(tenant=alice.tenant, session=session, seq=1, text="goodbye")
    (ended,) = queued("session.ended")
    with tenant_scope(alice.tenant.pk):
        delivery_attempt(delivery_id=ended.pk, now=ended.next_attempt_at)
    sent = json.loads(webhook_receiver.requests[0]["body"])
    assert [e["text"] for e in sent["data"]["transcript"]] == ["goodbye"]
    assert delivery(ended.pk).payload == sent
    # Frozen: a replay sends what was sent, whatever changed since.
    TranscriptEntryFactory(tenant=alice.tenant, session=session, seq=2, text="later")
    with tenant_scope(alice.tenant.pk):
        delivery_replay(delivery=delivery(ended.pk))
        delivery_attempt(delivery_id=ended.pk)
    assert webhook_receiver.requests[1]["body"] == webhook_receiver.requests[0]["body"]


def test_tool_calls_refused_or_finished_early_are_events(alice, alice_agent, synced_tools):
    WebhookEndpointFactory(tenant=alice.tenant, event_types=["tool.call.finished"])
    session = make_session(alice_agent)
    refused = admit_call(session, "not_allowlisted", {}, call_id="c-refused")
    assert refused.record.status == "rejected"
    allow(alice_agent, "get_current_time")
    admitted = admit_call(session, "get_current_time", {"timezone": "UTC"}, call_id="c-cancelled")
    assert admitted.record.status == "queued"
    assert [d.subject for d in queued("tool.call.finished")] == [str(refused.record.pk)]
    with tenant_scope(alice.tenant.pk):
        assert tool_call_finish_early(record=admitted.record, status="cancelled")
        assert not tool_call_finish_early(record=admitted.record, status="timeout")  # once
    assert [d.subject for d in queued("tool.call.finished")] == [
        str(refused.record.pk), str(admitted.record.pk),
    ]  # fmt: skip


def test_alerts_raised_and_cleared_are_events(alice, alice_agent, settings):
    settings.ALERT_MIN_EVENTS, settings.ALERT_ERROR_RATE, settings.ALERT_CLEAR_RATE = 4, 0.5, 0.25
    WebhookEndpointFactory(tenant=alice.tenant, event_types=["alert.raised", "alert.cleared"])
    now = timezone.now()
    for status in ["failed"] * 4:
        VoiceSessionFactory(tenant=alice.tenant, agent=alice_agent, status=status, ended_at=now)
    (raised,) = alerts_evaluate(now=now, deliver=lambda *a: None)[alice.tenant.pk].raised
    for _ in range(20):
        VoiceSessionFactory(
            tenant=alice.tenant, agent=alice_agent, status="ended",
            ended_at=now + timedelta(seconds=400),
        )  # fmt: skip
    later = now + timedelta(seconds=401)
    (cleared,) = alerts_evaluate(now=later, deliver=lambda *a: None)[alice.tenant.pk].cleared
    assert cleared.pk == raised.pk
    (up,) = queued("alert.raised")
    (down,) = queued("alert.cleared")
    assert up.payload["type"] == "alert.raised"
    assert down.payload["type"] == "alert.cleared"
    assert up.payload["data"]["id"] == down.payload["data"]["id"] == raised.pk
    assert up.payload["data"]["status"] == "open"
    assert down.payload["data"]["status"] == "cleared"
    assert down.payload["data"]["cleared_at"] is not None
