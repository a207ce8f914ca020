"""Client-side resume, superseding, detach and the session's own limits."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone
from prometheus_client import REGISTRY

from sessions.models import VoiceSession
from sessions.reaper import voice_sessions_reap_detached
from tests.factories import AgentFactory
from tests.sessions.conftest import issue_token, open_client
from voice_platform.observability import metric_labels

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def make_agent(tenant, **kwargs):
    kwargs.setdefault("response_modality", "TEXT")
    return AgentFactory(tenant=tenant, **kwargs)


@database_sync_to_async
def get_session(session_id) -> VoiceSession:
    return VoiceSession.unscoped.get(pk=session_id)


async def wait_for_status(session_id, status, timeout=5.0) -> VoiceSession:
    async with asyncio.timeout(timeout):
        while True:
            session = await get_session(session_id)
            if session.status == status:
                return session
            await asyncio.sleep(0.05)


async def test_client_resume_after_drop_restores_upstream_history(
    alice, live_settings, live_emulator
):
    agent = await make_agent(alice.tenant)
    first = await open_client(f"token={await issue_token(agent)}")
    started = await first.until("session.started")
    await first.send(type="text", text="remember me")
    await first.until("turn_complete")
    handle = live_emulator.recorder.last().handles[-1]
    await first.comm.disconnect()  # the network dropped: no "close" message
    detached = await wait_for_status(started["session_id"], VoiceSession.Status.RECONNECTING)
    assert detached.client_detached_at is not None
    assert detached.resumption_handle == handle

    second = await open_client(f"resume={started['resume_token']}")
    again = await second.until("session.started")
    assert again["session_id"] == started["session_id"]
    assert again["resume_token"] != started["resume_token"]  # rotated
    upstream = live_emulator.recorder.last()
    assert upstream.resumed
    assert upstream.client_setup["sessionResumption"]["handle"] == handle
    await second.send(type="text", text="still here")
    await second.until("turn_complete")
    assert second.texts("text") == "You said: still here"

    # The old resume token stopped working when it rotated.
    stale = await open_client(f"resume={started['resume_token']}")
    assert await stale.until_closed() == 4001
    await second.send(type="close")
    await second.until_closed()
    session = await get_session(started["session_id"])
    assert session.status == VoiceSession.Status.ENDED
    assert session.turns == 2


async def test_second_connection_supersedes_first_with_4000(alice, live_settings):
    agent = await make_agent(alice.tenant)
    first = await open_client(f"token={await issue_token(agent)}")
    started = await first.until("session.started")
    second = await open_client(f"resume={started['resume_token']}")
    await second.until("session.started")
    assert await first.until_closed() == 4000
    assert first.events[-1] == {"type": "session.ended", "reason": "superseded"}
    session = await get_session(started["session_id"])
    assert session.is_live  # superseding moves the session; it does not end it
    await second.send(type="text", text="on the new connection")
    await second.until("turn_complete")
    await second.send(type="close")
    assert await second.until_closed() == 1000


async def test_resume_after_window_is_refused_and_session_ends(alice, live_settings):
    agent = await make_agent(alice.tenant, resume_window_seconds=60)
    client = await open_client(f"token={await issue_token(agent)}")
    started = await client.until("session.started")
    await client.comm.disconnect()
    await wait_for_status(started["session_id"], VoiceSession.Status.RECONNECTING)
    await database_sync_to_async(VoiceSession.unscoped.filter(pk=started["session_id"]).update)(
        client_detached_at=timezone.now() - timedelta(seconds=61)
    )
    late = await open_client(f"resume={started['resume_token']}")
    assert await late.until_closed() == 4001
    session = await get_session(started["session_id"])
    assert session.status == VoiceSession.Status.ENDED
    assert session.end_reason == "client_gone"


def ended_metric(tenant: Any, reason: str) -> float:
    labels = {"tenant": metric_labels.tenant_label(tenant.slug), "reason": reason}
    return REGISTRY.get_sample_value("voice_sessions_ended_total", labels) or 0.0


async def test_reaper_ends_detached_sessions_past_their_window(alice, live_settings):
    agent = await make_agent(alice.tenant, resume_window_seconds=60)
    client = await open_client(f"token={await issue_token(agent)}")
    started = await client.until("session.started")
    await client.comm.disconnect()
    await wait_for_status(started["session_id"], VoiceSession.Status.RECONNECTING)
    ended_before = ended_metric(alice.tenant, "client_gone")
    assert await database_sync_to_async(voice_sessions_reap_detached)() == 0
    await database_sync_to_async(VoiceSession.unscoped.filter(pk=started["session_id"]).update)(
        client_detached_at=timezone.now() - timedelta(seconds=61)
    )
    assert await database_sync_to_async(voice_sessions_reap_detached)() == 1
    session = await get_session(started["session_id"])
    assert (session.status, session.end_reason) == (VoiceSession.Status.ENDED, "client_gone")
    # No connection held it: the process that ended the row counts its end.
    assert ended_metric(alice.tenant, "client_gone") == ended_before + 1


async def test_max_duration_warns_at_80_percent_then_ends(alice, live_settings):
    agent = await make_agent(alice.tenant, max_session_seconds=2)
    client = await open_client(f"token={await issue_token(agent)}")
    started = await client.until("session.started")
    warning = await client.until("warning", timeout=5)
    assert warning["code"] == "session_near_limit"
    assert await client.until_closed(timeout=5) == 1000
    assert client.events[-1] == {"type": "session.ended", "reason": "max_duration"}
    session = await get_session(started["session_id"])
    assert (session.status, session.end_reason) == (VoiceSession.Status.ENDED, "max_duration")
    assert 1.9 <= (session.ended_at - session.started_at).total_seconds() < 3.5


async def test_context_warning_at_80_percent_of_agent_limit(alice, live_settings):
    agent = await make_agent(alice.tenant, context_limit_tokens=20)
    client = await open_client(f"token={await issue_token(agent)}")
    await client.until("session.started")
    await client.send(type="text", text="a fairly long sentence to use up the small context")
    warning = await client.until("warning")
    assert warning["code"] == "context_near_limit"
    usage = client.of("usage")[-1]
    assert usage["total_tokens"] >= 16
    await client.until("turn_complete")
    await client.send(type="close")
    await client.until_closed()


async def test_rest_end_closes_the_live_connection(alice, live_settings):
    agent = await make_agent(alice.tenant)
    client = await open_client(f"token={await issue_token(agent)}")
    started = await client.until("session.started")
    response = await database_sync_to_async(alice.client.post)(
        f"/api/v1/sessions/{started['session_id']}/end/"
    )
    assert response.status_code == 200
    assert response.json()["status"] == "ended"
    assert await client.until_closed() == 1000
    assert client.events[-1] == {"type": "session.ended", "reason": "ended_by_api"}


async def test_ping_is_answered_with_pong(alice, live_settings):
    agent = await make_agent(alice.tenant)
    client = await open_client(f"token={await issue_token(agent)}")
    await client.until("session.started")
    await client.send(type="ping", id=42)
    assert await client.until("pong") == {"type": "pong", "id": 42}
    await client.send(type="close")
    await client.until_closed()


async def test_old_resume_token_works_until_the_new_one_is_delivered(
    alice, live_settings, live_emulator
):
    agent = await make_agent(alice.tenant)
    first = await open_client(f"token={await issue_token(agent)}")
    started = await first.until("session.started")
    await first.comm.disconnect()
    await wait_for_status(started["session_id"], VoiceSession.Status.RECONNECTING)
    live_emulator.fail_next(stall_setup=1.0)  # the resumed upstream is slow to come up
    flaky = await open_client(f"resume={started['resume_token']}")
    await asyncio.sleep(0.2)
    await flaky.comm.disconnect()  # dropped again before session.started arrived
    await wait_for_status(started["session_id"], VoiceSession.Status.RECONNECTING)
    again = await open_client(f"resume={started['resume_token']}")  # the old token still works
    resumed = await again.until("session.started")
    assert resumed["session_id"] == started["session_id"]
    stale = await open_client(f"resume={started['resume_token']}")  # now it has rotated
    assert await stale.until_closed() == 4001
    await again.send(type="close")
    await again.until_closed()


async def test_session_ended_elsewhere_is_noticed_without_the_channel_message(alice, live_settings):
    agent = await make_agent(alice.tenant)
    client = await open_client(f"token={await issue_token(agent)}")
    started = await client.until("session.started")
    # Ended in the database only (as if the channel-layer message were lost).
    await database_sync_to_async(VoiceSession.unscoped.filter(pk=started["session_id"]).update)(
        status=VoiceSession.Status.ENDED, end_reason="ended_by_api"
    )
    await client.send(type="text", text="anyone there?")
    assert await client.until_closed() == 1000
    assert client.events[-1] == {"type": "session.ended", "reason": "ended_by_api"}


async def test_superseded_connection_keeps_what_it_measured(alice, live_settings):
    agent = await make_agent(alice.tenant)
    first = await open_client(f"token={await issue_token(agent)}")
    started = await first.until("session.started")
    await first.send(type="text", text="one")
    await first.until("turn_complete")
    second = await open_client(f"resume={started['resume_token']}")
    await second.until("session.started")
    await first.until_closed()
    await second.send(type="text", text="two")
    await second.until("turn_complete")
    await second.send(type="close")
    await second.until_closed()
    session = await get_session(started["session_id"])
    assert session.turns == 2


async def test_dead_process_sessions_stop_counting_and_end_after_window(alice, live_settings):
    from sessions.reaper import STALE_AFTER

    agent = await make_agent(alice.tenant, resume_window_seconds=600)
    session = await database_sync_to_async(VoiceSession.unscoped.create)(
        tenant=alice.tenant, agent=agent, end_user_id="u", status="active",
        last_seen_at=timezone.now() - STALE_AFTER - timedelta(seconds=1),
    )  # fmt: skip
    await database_sync_to_async(voice_sessions_reap_detached)()
    session = await get_session(session.pk)
    assert session.status == VoiceSession.Status.RECONNECTING
    assert session.client_detached_at is not None  # no longer counts against the limit
    await database_sync_to_async(VoiceSession.unscoped.filter(pk=session.pk).update)(
        client_detached_at=timezone.now() - timedelta(seconds=601)
    )
    assert await database_sync_to_async(voice_sessions_reap_detached)() == 1


async def test_twenty_ms_frames_with_pings_stay_within_the_rate_limit(alice, live_settings):
    from tests.sessions.conftest import silence

    agent = await make_agent(alice.tenant)
    client = await open_client(f"token={await issue_token(agent)}")
    await client.until("session.started")
    for i in range(200):  # 4 s of 20 ms frames, sent as fast as possible, plus pings
        await client.send_audio(silence(20))
        if i % 20 == 0:
            await client.send(type="ping", id=i)
    await client.send(type="ping", id="last")
    assert (await client.until("pong"))["id"] == 0
    while (await client.until("pong"))["id"] != "last":
        pass
    await client.send(type="close")
    assert await client.until_closed() == 1000
