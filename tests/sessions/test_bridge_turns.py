from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from agents.models import Agent
from sessions.models import TranscriptEntry, VoiceSession
from tests.factories import AgentFactory
from tests.sessions.conftest import issue_token, open_client

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def make_agent(tenant, **kwargs):
    return AgentFactory(tenant=tenant, **kwargs)


@database_sync_to_async
def stored(session_id):
    session = VoiceSession.unscoped.get(pk=session_id)
    transcript = list(
        TranscriptEntry.unscoped.filter(session=session)
        .order_by("seq")
        .values_list("role", "kind", "text")
    )
    return session, transcript


async def test_bridge_text_turn_in_text_modality(alice, live_settings, live_emulator):
    agent = await make_agent(alice.tenant, response_modality=Agent.Modality.TEXT)
    client = await open_client(f"token={await issue_token(agent)}")
    started = await client.until("session.started")
    assert started["agent"] == {
        "id": agent.pk, "name": agent.name, "response_modality": "TEXT"
    }  # fmt: skip
    assert started["audio"] == {"input_rate": 16000, "output_rate": 24000}
    await client.send(type="text", text="hello there")
    await client.until("turn_complete")
    assert client.texts("text") == "You said: hello there"
    usage = client.of("usage")
    assert usage
    assert usage[-1]["context_limit"] == agent.context_limit_tokens
    await client.send(type="close")
    assert await client.until_closed() == 1000
    assert client.events[-1] == {"type": "session.ended", "reason": "client_closed"}
    session, transcript = await stored(started["session_id"])
    assert session.status == VoiceSession.Status.ENDED
    assert session.end_reason == "client_closed"
    assert session.turns == 1
    assert session.total_tokens == sum(u["total_tokens"] for u in usage)
    assert transcript == [
        ("user", "text", "hello there"),
        ("model", "text", "You said: hello there"),
    ]
    assert len(session.first_response_ms) == 1
    assert live_emulator.recorder.last().texts == ["hello there"]


async def test_bridge_text_turn_in_audio_modality(alice, live_settings, live_emulator):
    agent = await make_agent(alice.tenant, output_transcription=True)
    client = await open_client(f"token={await issue_token(agent)}")
    started = await client.until("session.started")
    await client.send(type="text", text="good morning")
    await client.until("turn_complete")
    assert client.audio, "an AUDIO agent answers with audio frames"
    assert all(len(frame) % 2 == 0 for frame in client.audio)
    assert client.texts("transcript.output") == "You said: good morning"
    assert not client.of("text")
    await client.send(type="close")
    await client.until_closed()
    session, transcript = await stored(started["session_id"])
    assert session.model_frames_out == len(client.audio)
    assert session.model_bytes_out == sum(len(f) for f in client.audio)
    assert transcript == [
        ("user", "text", "good morning"), ("model", "speech", "You said: good morning")
    ]  # fmt: skip


async def test_bridge_audio_turn_in_audio_modality(alice, live_settings, live_emulator):
    from tests.sessions.conftest import audio_arrived, speak

    agent = await make_agent(alice.tenant, input_transcription=True, output_transcription=True)
    client = await open_client(f"token={await issue_token(agent)}")
    started = await client.until("session.started")
    await speak(client)
    await client.until("turn_complete")
    assert client.audio
    heard = client.texts("transcript.input")
    assert heard
    await audio_arrived(live_emulator, 1.3)
    await client.send(type="close")
    await client.until_closed()
    session, transcript = await stored(started["session_id"])
    assert ("user", "speech", heard.strip()) in transcript
    assert session.client_frames_in == 13
    assert session.client_bytes_in == 6 * 3200 + 7 * 3200
    recorded = live_emulator.recorder.last()
    assert recorded.audio_seconds == pytest.approx(1.3, abs=0.01)


async def test_bridge_audio_turn_in_text_modality(alice, live_settings, live_emulator):
    from tests.sessions.conftest import speak

    agent = await make_agent(
        alice.tenant, response_modality=Agent.Modality.TEXT, input_transcription=True
    )
    client = await open_client(f"token={await issue_token(agent)}")
    await client.until("session.started")
    await speak(client)
    await client.until("turn_complete")
    assert client.texts("text"), "a TEXT agent answers an audio turn with text"
    assert not client.audio
    assert client.texts("transcript.input")
    await client.send(type="close")
    assert await client.until_closed() == 1000
