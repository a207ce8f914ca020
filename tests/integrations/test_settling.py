"""Emitting and building events safely: an emission that fails inside a caller's
transaction loses only itself; a session's report waits for tool calls still running."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from conftest import require_postgres
from integrations import events
from integrations.delivery import delivery_attempt, delivery_replay
from integrations.models import WebhookDelivery
from integrations.payloads import UNSETTLED_RECHECK, tool_calls_wait
from sessions.models import TranscriptEntry, VoiceSession
from sessions.services import voice_session_end
from tests.factories import (
    TranscriptEntryFactory,
    VoiceSessionFactory,
    WebhookEndpointFactory,
)
from tests.integrations.conftest import delivery, make_endpoint
from tests.tools.conftest import admit_call, allow
from tools.outcome import tool_call_finish_early
from voice_platform.tenancy.scope import tenant_scope


@pytest.mark.django_db(transaction=True)
def test_a_failed_emission_rolls_back_alone_and_the_callers_transaction_commits(
    alice, alice_agent, monkeypatch, caplog
):
    require_postgres()
    WebhookEndpointFactory(tenant=alice.tenant)
    session = VoiceSessionFactory(tenant=alice.tenant, agent=alice_agent)

    def broken_bulk_create(objs: Any, **kwargs: Any) -> list[WebhookDelivery]:
        # A real database error: PostgreSQL aborts the transaction it runs in.
        list(WebhookDelivery.unscoped.raw("SELECT id FROM no_such_table_for_this_test"))
        raise AssertionError("unreachable: the query above fails")

    monkeypatch.setattr(WebhookDelivery.unscoped, "bulk_create", broken_bulk_create)
    caplog.set_level(logging.ERROR, logger="integrations.events")
    with transaction.atomic():
        TranscriptEntryFactory(tenant=alice.tenant, session=session, seq=1, text="before")
        assert events.emit(tenant_id=alice.tenant.pk, event_type="session.ended", subject="x") == []
        # Without the savepoint this write fails: "current transaction is aborted".
        TranscriptEntryFactory(tenant=alice.tenant, session=session, seq=2, text="after")
    stored = TranscriptEntry.unscoped.filter(session=session).order_by("seq")
    assert [e.text for e in stored] == ["before", "after"]
    assert not WebhookDelivery.unscoped.exists()
    assert "could not be queued" in caplog.text
    assert "no_such_table_for_this_test" in caplog.text


def ended_during_a_tool_call(alice: Any, agent: Any, call_id: str) -> tuple[Any, WebhookDelivery]:
    """A session that ended (the client hung up) while one of its calls is queued."""
    session = VoiceSessionFactory(
        tenant=alice.tenant, agent=agent, status=VoiceSession.Status.ACTIVE,
        connection_channel="chan-1",
    )  # fmt: skip
    admitted = admit_call(session, "get_current_time", {"timezone": "UTC"}, call_id=call_id)
    assert admitted.record.status == "queued"
    with tenant_scope(alice.tenant.pk):
        assert voice_session_end(
            session_id=session.pk, channel_name="chan-1", status=VoiceSession.Status.ENDED,
            reason="client_closed", progress=None,
        )  # fmt: skip
    (ended,) = WebhookDelivery.unscoped.filter(event_type="session.ended", subject=str(session.pk))
    return admitted.record, ended


@pytest.mark.django_db
def test_the_report_waits_for_a_tool_call_still_running_then_holds_its_outcome(
    alice, alice_agent, synced_tools, webhook_receiver
):
    make_endpoint(alice.tenant, webhook_receiver.url(), event_types=["session.ended"])
    allow(alice_agent, "get_current_time")
    record, ended = ended_during_a_tool_call(alice, alice_agent, "c-slow")
    now = ended.next_attempt_at  # its first attempt
    with tenant_scope(alice.tenant.pk):
        result = delivery_attempt(delivery_id=ended.pk, now=now)
    assert result is not None
    assert (result.outcome, result.number) == ("deferred", 0)
    assert result.retry_after_seconds == UNSETTLED_RECHECK.total_seconds()
    waiting = delivery(ended.pk)
    assert waiting.payload is None  # nothing frozen yet
    assert (waiting.status, waiting.attempt_count) == ("pending", 0)  # not a failed attempt
    assert waiting.next_attempt_at == now + UNSETTLED_RECHECK
    assert webhook_receiver.requests == []
    with tenant_scope(alice.tenant.pk):
        # Not due before its new time.
        assert delivery_attempt(delivery_id=ended.pk, now=now) is None
        assert tool_call_finish_early(record=record, status="cancelled")
        result = delivery_attempt(delivery_id=ended.pk, now=now + UNSETTLED_RECHECK)
    assert result is not None
    assert result.outcome == "succeeded"
    sent = json.loads(webhook_receiver.requests[0]["body"])
    assert [(c["call_id"], c["status"]) for c in sent["data"]["tool_calls"]] == [
        ("c-slow", "cancelled")
    ]
    assert sent["data"]["tool_calls_final"] is True
    # Frozen from now on: a replay sends the same report.
    with tenant_scope(alice.tenant.pk):
        assert delivery_replay(delivery=delivery(ended.pk))
        delivery_attempt(delivery_id=ended.pk)
    assert webhook_receiver.requests[1]["body"] == webhook_receiver.requests[0]["body"]


@pytest.mark.django_db
def test_past_the_bound_the_report_is_sent_with_the_call_marked_unfinished(
    alice, alice_agent, synced_tools, webhook_receiver, settings
):
    make_endpoint(alice.tenant, webhook_receiver.url(), event_types=["session.ended"])
    allow(alice_agent, "get_current_time")
    _, ended = ended_during_a_tool_call(alice, alice_agent, "c-stuck")
    assert tool_calls_wait() == timedelta(seconds=settings.TOOL_TIMEOUT_MAX + 60)
    with tenant_scope(alice.tenant.pk):
        early = delivery_attempt(
            delivery_id=ended.pk, now=ended.created_at + timedelta(seconds=170)
        )
        assert early is not None
        assert early.outcome == "deferred"  # 170 s: still inside the bound
        late = ended.created_at + tool_calls_wait()
        result = delivery_attempt(delivery_id=ended.pk, now=late)
    assert result is not None
    assert result.outcome == "succeeded"
    sent = json.loads(webhook_receiver.requests[0]["body"])
    assert [(c["call_id"], c["status"]) for c in sent["data"]["tool_calls"]] == [
        ("c-stuck", "queued")
    ]
    assert sent["data"]["tool_calls_final"] is False
    assert delivery(ended.pk).payload == sent


@pytest.mark.django_db
def test_a_report_without_tool_calls_is_final_at_once(alice, alice_agent, webhook_receiver):
    make_endpoint(alice.tenant, webhook_receiver.url(), event_types=["session.ended"])
    session = VoiceSessionFactory(tenant=alice.tenant, agent=alice_agent, status="ended",
                                  ended_at=timezone.now())  # fmt: skip
    (ended,) = events.emit(tenant_id=alice.tenant.pk, event_type="session.ended",
                           subject=str(session.pk))  # fmt: skip
    with tenant_scope(alice.tenant.pk):
        result = delivery_attempt(delivery_id=ended.pk)
    assert result is not None
    assert result.outcome == "succeeded"
    assert json.loads(webhook_receiver.requests[0]["body"])["data"]["tool_calls_final"] is True
