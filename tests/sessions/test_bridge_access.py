"""Who may open a session, and what bad input does to it (client-protocol close codes)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from sessions.models import ClientToken, TranscriptEntry, VoiceSession
from tests.factories import AgentFactory
from tests.sessions.conftest import issue_token, open_client, tone
from voice_platform.tenancy.models import Tenant

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def make_agent(tenant, **kwargs):
    return AgentFactory(tenant=tenant, **kwargs)


@database_sync_to_async
def update_tokens(**fields):
    ClientToken.unscoped.update(**fields)


async def refused_with(query: str, origin: str | None = None) -> int:
    client = await open_client(query, origin=origin)
    code = await client.until_closed(timeout=10)
    assert client.events == []  # handshake refusals send nothing before the close
    return code


async def test_access_unknown_or_missing_token_is_4001(alice, live_settings):
    assert await refused_with("token=ct_nope") == 4001
    assert await refused_with("") == 4001
    assert await refused_with("resume=rt_nope") == 4001


async def test_access_expired_token_is_4001(alice, live_settings):
    agent = await make_agent(alice.tenant)
    token = await issue_token(agent)
    await update_tokens(expires_at=timezone.now() - timedelta(seconds=1))
    assert await refused_with(f"token={token}") == 4001


async def test_access_new_session_window_passed_is_4001(alice, live_settings):
    agent = await make_agent(alice.tenant)
    token = await issue_token(agent)
    await update_tokens(new_session_expires_at=timezone.now() - timedelta(seconds=1))
    assert await refused_with(f"token={token}") == 4001


async def test_access_token_reuse_beyond_uses_is_4001(alice, live_settings):
    agent = await make_agent(alice.tenant)
    token = await issue_token(agent, uses=1)
    first = await open_client(f"token={token}")
    await first.until("session.started")
    assert await refused_with(f"token={token}") == 4001
    await first.send(type="close")
    await first.until_closed()


async def test_access_revoked_token_is_4001(alice, live_settings):
    agent = await make_agent(alice.tenant)
    token = await issue_token(agent)
    await update_tokens(revoked_at=timezone.now())
    assert await refused_with(f"token={token}") == 4001


async def test_access_token_opens_only_its_own_agent(alice, charlie, live_settings):
    mine = await make_agent(alice.tenant, name="Mine")
    await make_agent(charlie.tenant, name="Theirs")
    client = await open_client(f"token={await issue_token(mine)}")
    started = await client.until("session.started")
    assert started["agent"]["id"] == mine.pk
    await client.send(type="close")
    await client.until_closed()
    session = await database_sync_to_async(VoiceSession.unscoped.get)(pk=started["session_id"])
    assert session.tenant_id == alice.tenant.pk


async def test_access_disabled_agent_or_suspended_tenant_is_4003(alice, live_settings):
    agent = await make_agent(alice.tenant, enabled=False)
    assert await refused_with(f"token={await issue_token(agent)}") == 4003
    other = await make_agent(alice.tenant)
    token = await issue_token(other)
    await database_sync_to_async(Tenant.objects.filter(pk=alice.tenant.pk).update)(
        status=Tenant.Status.SUSPENDED
    )
    assert await refused_with(f"token={token}") == 4003


async def test_access_origin_not_allowed_is_4003_and_keeps_the_use(alice, live_settings):
    agent = await make_agent(alice.tenant, allowed_origins=["https://app.example.com"])
    token = await issue_token(agent)
    assert await refused_with(f"token={token}", origin="https://evil.example.net") == 4003
    client = await open_client(f"token={token}", origin="https://app.example.com")
    await client.until("session.started")  # the refused attempt did not consume the use
    await client.send(type="close")
    await client.until_closed()


async def test_access_tenant_session_limit_is_4029(alice, live_settings):
    await database_sync_to_async(Tenant.objects.filter(pk=alice.tenant.pk).update)(
        max_concurrent_sessions=1
    )
    agent = await make_agent(alice.tenant)
    first = await open_client(f"token={await issue_token(agent)}")
    await first.until("session.started")
    token = await issue_token(agent)
    assert await refused_with(f"token={token}") == 4029
    await first.send(type="close")
    await first.until_closed()
    again = await open_client(f"token={token}")  # the refusal kept the token's use
    await again.until("session.started")
    await again.send(type="close")
    await again.until_closed()


@pytest.mark.parametrize("frame", [b"\x01" * 3201, b"\x00" * 32002])
async def test_bad_audio_frame_closes_4009(alice, live_settings, frame):
    agent = await make_agent(alice.tenant)
    client = await open_client(f"token={await issue_token(agent)}")
    started = await client.until("session.started")
    await client.send_audio(frame)
    assert await client.until_closed() == 4009
    assert client.of("error")[-1]["code"] == "bad_frame"
    assert client.events[-1] == {"type": "session.ended", "reason": "bad_frame"}
    session = await database_sync_to_async(VoiceSession.unscoped.get)(pk=started["session_id"])
    assert session.status == VoiceSession.Status.ENDED
    assert session.end_reason == "bad_frame"


async def test_message_rate_limit_closes_4008(alice, live_settings):
    live_settings.LIVE_WS_MESSAGE_RATE = 5
    live_settings.LIVE_WS_MESSAGE_BURST = 10
    agent = await make_agent(alice.tenant)
    client = await open_client(f"token={await issue_token(agent)}")
    await client.until("session.started")
    for i in range(30):
        await client.send(type="ping", id=i)
    assert await client.until_closed() == 4008
    assert client.of("error")[-1]["code"] == "rate_limited"
    assert 10 <= len(client.of("pong")) < 30


@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_tiny_audio_frames_count_against_the_message_rate(alice, live_settings, modality):
    """Two-byte frames are almost no bytes but each costs a message's work: they count."""
    agent = await make_agent(alice.tenant, response_modality=modality)
    client = await open_client(f"token={await issue_token(agent)}")
    started = await client.until("session.started")
    for _ in range(2_000):  # 4 KB in all: far inside the audio byte rate
        await client.send_audio(b"\x00\x00")
    assert await client.until_closed() == 4008
    assert client.of("error")[-1]["code"] == "rate_limited"
    session = await database_sync_to_async(VoiceSession.unscoped.get)(pk=started["session_id"])
    assert session.end_reason == "rate_limited"


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        "[1, 2]",
        '{"type": "dance"}',
        '{"type": "text", "text": 5}',
        '{"type": "text", "text": "x", "turn_complete": "yes"}',
        '{"no_type": true}',
        '{"type": "ping", "id": {"a": 1}}',
    ],
)
async def test_bad_message_gets_error_and_session_survives(alice, live_settings, raw):
    agent = await make_agent(alice.tenant, response_modality="TEXT")
    client = await open_client(f"token={await issue_token(agent)}")
    await client.until("session.started")
    await client.comm.send_to(text_data=raw)
    error = await client.until("error")
    assert error["code"] == "bad_message"
    await client.send(type="ping", id="still-there")
    assert (await client.until("pong"))["id"] == "still-there"
    await client.send(type="text", text="after the error")
    await client.until("turn_complete")
    assert client.texts("text") == "You said: after the error"
    await client.send(type="close")
    assert await client.until_closed() == 1000


async def test_text_is_sanitised_before_upstream(alice, live_settings, live_emulator):
    agent = await make_agent(alice.tenant, response_modality="TEXT")
    client = await open_client(f"token={await issue_token(agent)}")
    await client.until("session.started")
    await client.send(type="text", text="hi\x00\x07 there\n\tok\x1b" + "x" * 20_000)
    await client.until("turn_complete")
    sent = live_emulator.recorder.last().texts[-1]
    assert sent.startswith("hi there\n\tok")
    assert len(sent) == 10_000
    await client.send(type="close")
    await client.until_closed()


async def test_a_lone_surrogate_in_text_is_replaced_and_no_turn_is_lost(
    alice, live_settings, live_emulator
):
    """JSON may carry an unpaired "\\ud800" escape; PostgreSQL cannot store it. It used to
    fail the turn's flush and lose the good entries of the same batch."""
    agent = await make_agent(alice.tenant, response_modality="TEXT")
    client = await open_client(f"token={await issue_token(agent)}")
    started = await client.until("session.started")
    await client.send(type="text", text="before")
    await client.until("turn_complete")
    await client.comm.send_to(text_data='{"type": "text", "text": "odd \\ud800 one"}')
    await client.until("turn_complete")
    await client.send(type="text", text="after")
    await client.until("turn_complete")
    await client.send(type="close")
    await client.until_closed()
    assert live_emulator.recorder.last().texts[1] == "odd \ufffd one"
    texts = await database_sync_to_async(
        lambda: list(
            TranscriptEntry.unscoped.filter(session_id=started["session_id"])
            .order_by("seq")
            .values_list("text", flat=True)
        )
    )()
    assert texts == [
        "before", "You said: before", "odd \ufffd one", "You said: odd \ufffd one",
        "after", "You said: after",
    ]  # fmt: skip


async def test_audio_before_upstream_ready_is_buffered(alice, live_settings, live_emulator):
    agent = await make_agent(alice.tenant)
    live_emulator.fail_next(stall_setup=0.3)
    client = await open_client(f"token={await issue_token(agent)}")
    await client.send_audio(tone(100))  # before session.started
    await client.until("session.started")
    await client.send(type="close")
    await client.until_closed()
    assert live_emulator.recorder.last().audio_seconds == pytest.approx(0.1, abs=0.001)
