"""Per-turn timing through the consumer, the bridge, the SDK and the emulator: each figure
moves as it should (docs/observability.md says what each one measures)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async

from sessions.models import VoiceSession
from tests.factories import AgentFactory
from tests.sessions.conftest import speak
from tests.sessions.test_bridge_tools import agent_with
from tests.sessions.test_live_resilience import close, start

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def make_agent(tenant: Any, modality: str, **kwargs: Any) -> Any:
    return AgentFactory(tenant=tenant, response_modality=modality, **kwargs)


@database_sync_to_async
def stored(session_id: str) -> VoiceSession:
    return VoiceSession.unscoped.get(pk=session_id)


async def one_text_turn(agent: Any) -> dict[str, Any]:
    client, session_id = await start(agent)
    await client.send(type="text", text="how long does this take")
    await client.until("turn_complete")
    await close(client)
    [timing] = (await stored(session_id)).turn_timings
    return timing


async def test_a_delayed_reply_shows_in_the_turn_by_about_its_delay(
    alice, live_settings, live_emulator
):
    agent = await make_agent(alice.tenant, "TEXT")
    prompt = await one_text_turn(agent)
    live_emulator.fail_next(reply_delay=0.8)
    delayed = await one_text_turn(agent)
    for timing in (prompt, delayed):
        assert timing["speech_end_source"] == "text"
        assert timing["outcome"] == "complete"
        assert 0 < timing["reply_in_ms"] <= timing["reply_out_ms"]
        assert timing["playback_ms"] is None  # text: nothing is played
    added = delayed["reply_in_ms"] - prompt["reply_in_ms"]
    assert 700 <= added <= 1600, (prompt, delayed)


async def test_a_spoken_turn_is_timed_from_the_end_of_speech_to_playback(
    alice, live_settings, live_emulator
):
    """The reply can only start once the service's VAD heard the silence after the speech:
    timed from the end of the speech, the first audio comes no sooner than that silence."""
    agent = await make_agent(alice.tenant, "AUDIO", vad_silence_duration_ms=500)
    client, session_id = await start(agent)
    await speak(client, speech_ms=600, silence_ms=1200)
    while not isinstance(await client.recv(), bytes):
        pass
    await asyncio.sleep(0.2)  # the client's jitter buffer, then the speaker starts
    await client.send(type="playback.started")
    await client.until("turn_complete")
    await close(client)
    session = await stored(session_id)
    [timing] = session.turn_timings
    assert timing["speech_end_source"] == "vad"
    assert timing["audio"] is True
    assert timing["reply_in_ms"] >= 400, timing  # at least the VAD's silence (500 ms)
    assert timing["reply_in_ms"] <= timing["reply_out_ms"] <= timing["playback_ms"]
    assert timing["playback_ms"] - timing["reply_out_ms"] >= 150  # the report's 200 ms
    assert session.timing_summary()["playback"]["p50_ms"] == timing["playback_ms"]
    assert sum(session.latency_histogram) == 1
    assert session.first_response_ms == [timing["reply_in_ms"]]


async def test_tool_time_is_part_of_its_turn(alice, tools_ready):
    agent = await agent_with(alice.tenant, {"slow_tool": {}})
    client, session_id = await start(agent)
    await client.send(type="text", text='call slow_tool {"seconds": 0.8}')
    await client.until("turn_complete")
    await close(client)
    [timing] = (await stored(session_id)).turn_timings
    assert 750 <= timing["tool_ms"] <= 3000, timing
    assert timing["reply_in_ms"] >= timing["tool_ms"]  # the answer needed the result


@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_a_reconnect_inside_a_turn_is_its_gap(alice, live_settings, live_emulator, modality):
    agent = await make_agent(alice.tenant, modality, output_transcription=modality == "AUDIO")
    live_emulator.fail_next(reply_delay=3.0)  # the turn is heard, then the connection dies
    client, session_id = await start(agent)
    await client.send(type="text", text="are you there")
    await asyncio.sleep(0.3)
    live_emulator.emulator.abort_connections()
    await client.until("session.resumed", timeout=15)
    await client.until("turn_complete", timeout=15)
    await close(client)
    session = await stored(session_id)
    [timing] = session.turn_timings
    [reconnect] = session.reconnect_log
    assert timing["reconnect_gap_ms"] > 0
    assert timing["reconnect_gap_ms"] == pytest.approx(reconnect["gap_ms"], abs=150)
    assert timing["reply_in_ms"] >= 300 + timing["reconnect_gap_ms"] - 150


async def wait_for_timings(session_id: str, count: int, timeout: float = 5) -> list[dict]:
    async with asyncio.timeout(timeout):
        while len(timings := (await stored(session_id)).turn_timings) < count:
            await asyncio.sleep(0.05)
    return timings


async def test_a_finished_audio_turn_is_stored_at_its_report_or_after_the_wait(
    alice, live_settings, live_emulator, monkeypatch
):
    """Stored while the call goes on: at the playback report, or once the wait for it is
    over; never only with the next turn."""
    monkeypatch.setattr("sessions.bridge.PLAYBACK_WAIT_SECONDS", 0.5)
    agent = await make_agent(alice.tenant, "AUDIO")
    client, session_id = await start(agent)
    await client.send(type="text", text="first")
    await client.until("turn_complete")
    assert (await stored(session_id)).turn_timings == []  # waiting for its report
    await client.send(type="playback.started")
    [reported] = await wait_for_timings(session_id, 1)
    assert reported["playback_ms"] is not None
    await client.send(type="text", text="second")
    await client.until("turn_complete")
    unreported = (await wait_for_timings(session_id, 2))[1]
    assert (unreported["turn"], unreported["playback_ms"]) == (2, None)
    assert unreported["reply_out_ms"] is not None
    await close(client)


async def test_audio_end_ends_a_turn_only_when_it_cuts_speech(alice, live_settings, live_emulator):
    agent = await make_agent(alice.tenant, "AUDIO")
    client, session_id = await start(agent)
    await speak(client, speech_ms=600, silence_ms=0)  # the microphone stops mid-sentence
    await client.send(type="audio_end")
    await client.until("turn_complete")
    await speak(client, speech_ms=600, silence_ms=1200)  # a pause ends this one
    await client.until("turn_complete")
    await client.send(type="audio_end")  # then the microphone stops: no new turn
    await asyncio.sleep(0.5)
    await close(client)
    timings = (await stored(session_id)).turn_timings
    assert [t["speech_end_source"] for t in timings] == ["audio_end", "vad"]
    assert [t["outcome"] for t in timings] == ["complete", "complete"]
