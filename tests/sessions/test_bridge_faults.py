"""Upstream faults: the session resumes with its history and no client turn is lost."""

from __future__ import annotations

import time

import pytest
from channels.db import database_sync_to_async

from sessions.models import TranscriptEntry, VoiceSession
from tests.factories import AgentFactory
from tests.sessions.conftest import issue_token, open_client

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def make_agent(tenant, **kwargs):
    return AgentFactory(tenant=tenant, response_modality="TEXT", **kwargs)


@database_sync_to_async
def stored(session_id):
    session = VoiceSession.unscoped.get(pk=session_id)
    texts = list(
        TranscriptEntry.unscoped.filter(session=session)
        .order_by("seq")
        .values_list("text", flat=True)
    )
    return session, texts


async def two_turns_across_a_fault(alice, live_emulator, **fault):
    """Turn 1 on a healthy connection, then the fault hits while turn 2 is in flight."""
    agent = await make_agent(alice.tenant)
    live_emulator.fail_next(**fault)
    client = await open_client(f"token={await issue_token(agent)}")
    started = await client.until("session.started")
    await client.send(type="text", text="first turn")
    await client.until("turn_complete")
    first = live_emulator.recorder.last()
    sent_at = time.monotonic()
    await client.send(type="text", text="second turn")
    reconnecting = await client.until("session.reconnecting")
    detected_after = time.monotonic() - sent_at
    await client.until("session.resumed")
    await client.until("turn_complete")
    second = live_emulator.recorder.last()
    return client, started, first, second, reconnecting, detected_after


def assert_resumed_with_history(first, second):
    assert second is not first
    assert second.resumed, "the new connection restored the old one's history"
    assert second.client_setup["sessionResumption"]["handle"] == first.handles[-1]


@pytest.mark.parametrize(
    "fault",
    [
        {"close_after": 2, "close_code": 1011},
        {"close_after": 2, "close_code": 1001, "close_reason": "going away"},
        {"close_after": 2, "close_code": 1000, "close_reason": ""},
        {"drop_after": 2},
    ],
    ids=["close-1011", "close-1001", "close-1000-unasked", "tcp-drop"],
)
async def test_fault_resumes_with_history_and_replays_the_turn(
    alice, live_settings, live_emulator, fault
):
    client, started, first, second, _, _ = await two_turns_across_a_fault(
        alice, live_emulator, **fault
    )
    assert_resumed_with_history(first, second)
    assert "second turn" in second.texts  # the turn in flight was sent again
    assert client.texts("text") == "You said: first turnYou said: second turn"
    await client.send(type="close")
    await client.until_closed()
    session, texts = await stored(started["session_id"])
    assert session.reconnects == 1
    assert texts == ["first turn", "You said: first turn", "second turn", "You said: second turn"]


async def test_black_hole_is_detected_within_5_seconds(alice, live_settings, live_emulator):
    client, _, first, second, reconnecting, detected_after = await two_turns_across_a_fault(
        alice, live_emulator, black_hole_after=2
    )
    assert reconnecting["reason"] == "upstream_unresponsive"
    assert detected_after < 5.0
    assert_resumed_with_history(first, second)
    assert client.texts("text").endswith("You said: second turn")
    await client.send(type="close")
    await client.until_closed()


async def test_go_away_reconnects_proactively(alice, live_settings, live_emulator):
    agent = await make_agent(alice.tenant)
    live_emulator.fail_next(lifetime=3.0, go_away_notice=2.0)
    client = await open_client(f"token={await issue_token(agent)}")
    await client.until("session.started")
    await client.send(type="text", text="before")
    await client.until("turn_complete")
    first = live_emulator.recorder.last()
    reconnecting = await client.until("session.reconnecting", timeout=5)
    assert reconnecting["reason"] == "go_away"
    await client.until("session.resumed")
    second = live_emulator.recorder.last()
    # Proactive: we left before the server's deadline closed us.
    assert first.close_code == 1000
    assert_resumed_with_history(first, second)
    await client.send(type="text", text="after")
    await client.until("turn_complete")
    assert client.texts("text") == "You said: beforeYou said: after"
    await client.send(type="close")
    await client.until_closed()


async def test_upstream_rejection_ends_session_with_clear_error(
    alice, live_settings, live_emulator
):
    agent = await make_agent(alice.tenant)
    live_emulator.fail_next(close_after=1, close_code=1008, close_reason="Permission denied.")
    client = await open_client(f"token={await issue_token(agent)}")
    started = await client.until("session.started")
    await client.send(type="text", text="hello")
    assert await client.until_closed() == 4011
    error = client.of("error")[-1]
    assert error["code"] == "upstream_rejected"
    assert "Permission denied." in error["message"]
    assert client.events[-1] == {"type": "session.ended", "reason": "upstream_error"}
    session, _ = await stored(started["session_id"])
    assert session.status == VoiceSession.Status.FAILED
    assert len(live_emulator.recorder.sessions) == 1  # no retry of a rejected request


async def test_unknown_model_is_rejected_at_connect(alice, live_settings, live_emulator):
    live_settings.LIVE_MODELS = [*live_settings.LIVE_MODELS, "gemini-not-served"]
    agent = await make_agent(alice.tenant, model="gemini-not-served")
    client = await open_client(f"token={await issue_token(agent)}")
    assert await client.until_closed() == 4011
    assert client.of("error")[-1]["code"] == "upstream_rejected"
    assert not client.of("session.started")


async def test_upstream_unavailable_after_retries(alice, live_settings, live_emulator):
    live_settings.LIVE_RECONNECT_TRIES = 2
    agent = await make_agent(alice.tenant)
    for _ in range(3):
        live_emulator.fail_next(drop_after=0)
    client = await open_client(f"token={await issue_token(agent)}")
    await client.until("session.started")
    assert await client.until_closed(timeout=20) == 4011
    assert client.events[-1] == {"type": "session.ended", "reason": "upstream_unavailable"}
    assert len(client.of("session.reconnecting")) >= 2
    assert len(live_emulator.recorder.sessions) == 3


async def test_audio_during_reconnect_is_buffered_two_seconds_oldest_dropped(
    alice, live_settings, live_emulator
):
    from tests.sessions.conftest import silence

    agent = await make_agent(alice.tenant)
    live_emulator.fail_next(close_after=1, close_code=1011)
    live_emulator.fail_next(stall_setup=0.5)
    client = await open_client(f"token={await issue_token(agent)}")
    await client.until("session.started")
    await client.send(type="text", text="trigger")
    await client.until("session.reconnecting")
    for _ in range(30):  # 3 s of audio while the upstream is away
        await client.send_audio(silence(100))
    await client.until("session.resumed")
    await client.until("turn_complete")
    await client.send(type="close")
    await client.until_closed()
    resumed = live_emulator.recorder.sessions[1]
    # 2 s kept (the newest), 1 s dropped; the replayed text turn got its answer. The kept
    # backlog goes up at real time, and a backlog's long silence is skipped (the pacer).
    assert 0 < resumed.audio_seconds <= 2.0
    assert client.texts("text") == "You said: trigger"
    session = await database_sync_to_async(VoiceSession.unscoped.get)(
        pk=client.of("session.started")[0]["session_id"]
    )
    assert session.dropped_audio_frames == 10
