"""The realistic profile on the wire: slow pongs, latency and jitter, faults on a clock,
and the record a long-call test audits."""

from __future__ import annotations

import asyncio
import time

import pytest
from google.genai import errors, types

from voice_platform.live_emulator import protocol
from voice_platform.live_emulator.testing import running_emulator

from .helpers import (
    calm_realistic,
    flags,
    next_message,
    send_audio,
    send_text,
    silence,
    text_of,
    tone,
    turn,
)

TEXT = {"response_modalities": ["TEXT"]}


async def pong_after(session, within: float = 3.0) -> float:
    """Latency of one websockets ping on the SDK session's own socket."""
    started = time.monotonic()
    await asyncio.wait_for(await session._ws.ping(), within)
    return time.monotonic() - started


# --- slow pongs ---------------------------------------------------------------------------


async def test_pongs_are_late_but_answered(live_emulator_cert_dir):
    # 8-30 s at time scale 60: 0.13-0.5 s. No stalls: this test is about pongs.
    async with calm_realistic(live_emulator_cert_dir) as emu:
        client = emu.make_client()
        async with client.aio.live.connect(model=emu.model, config=TEXT) as s:
            delays = await asyncio.gather(pong_after(s), pong_after(s))
            await send_text(s, "still talking")  # late pongs do not hold messages back
            assert text_of(await turn(s)) == "You said: still talking"
        record = emu.recorder.last()
    assert all(8 / 60 - 0.02 <= delay <= 30 / 60 + 0.1 for delay in delays)
    assert record.pings_received == 2
    assert len(record.pong_delays) == 2
    assert all(8 / 60 - 0.02 <= delay <= 30 / 60 + 0.05 for delay in record.pong_delays)


async def test_pongs_default_are_immediate(live_emulator, live_client):
    async with live_client.aio.live.connect(model=live_emulator.model, config=TEXT) as s:
        assert await pong_after(s) < 0.1
    assert live_emulator.recorder.last().pong_delays == [0.0]


async def test_black_hole_answers_no_ping(live_emulator, live_client):
    live_emulator.fail_next(black_hole_after=1)
    async with live_client.aio.live.connect(model=live_emulator.model, config=TEXT) as s:
        await send_text(s, "into the void")
        record = live_emulator.recorder.last()
        while not record.black_holed:
            await asyncio.sleep(0.01)
        with pytest.raises(TimeoutError):
            await pong_after(s, within=0.5)
        s._ws.transport.abort()  # leave without waiting for a close handshake
    assert record.pings_received == 0  # reading stopped: the ping never got in


# --- latency and jitter -------------------------------------------------------------------


async def test_latency_and_jitter_never_reorder(live_emulator_cert_dir):
    async with running_emulator(
        cert_dir=live_emulator_cert_dir, pace=0, text_parts=12, latency=0.1, jitter=0.08
    ) as emu:
        client = emu.make_client()
        started = time.monotonic()
        async with client.aio.live.connect(model=emu.model, config=TEXT) as s:
            connected = time.monotonic() - started
            sent = time.monotonic()
            text = "one two three four five six seven eight nine ten eleven twelve"
            await send_text(s, text)
            first = await next_message(s)
            waited = time.monotonic() - sent
            messages = [first, *await turn(s)]
    assert connected >= 0.02  # setupComplete is a server message too
    assert waited >= 0.02
    assert text_of(messages) == f"You said: {text}"  # twelve parts, in order
    assert flags(messages)[-2:] == ["generation_complete", "turn_complete"]


# --- faults on a clock --------------------------------------------------------------------


def timed(emulator, **faults: object) -> types.LiveConnectConfig:
    headers = emulator.faults_header(**faults)
    return types.LiveConnectConfig(
        response_modalities=["TEXT"], http_options=types.HttpOptions(headers=headers)
    )


@pytest.mark.parametrize(
    ("fault", "code"), [("close_at", 1011), ("drop_at", 1006)], ids=["close", "drop"]
)
async def test_timed_fault_ends_the_connection(live_emulator_cert_dir, fault, code):
    # 0.6 s at time scale 2: 0.3 s after setupComplete, whatever the message count.
    async with running_emulator(cert_dir=live_emulator_cert_dir, pace=0, time_scale=2) as emu:
        client = emu.make_client()
        started = time.monotonic()
        async with client.aio.live.connect(model=emu.model, config=timed(emu, **{fault: 0.6})) as s:
            with pytest.raises(errors.APIError) as excinfo:
                await next_message(s, within=2)
        elapsed = time.monotonic() - started
        record = await emu.recorder.wait_closed(emu.recorder.last())
    assert excinfo.value.code == code
    assert 0.25 <= elapsed <= 1.0
    assert (record.close_code, record.closed_by) == (code, "fault")
    if fault == "close_at":
        assert record.close_reason == protocol.REASON_INTERNAL


async def test_timed_black_hole(live_emulator, live_client):
    config = timed(live_emulator, black_hole_at=0.2)
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, "before")
        assert text_of(await turn(s)) == "You said: before"
        await asyncio.sleep(0.3)
        await send_text(s, "after")
        with pytest.raises(TimeoutError):
            await next_message(s, within=0.4)
        record = live_emulator.recorder.last()
        assert record.black_holed
        assert record.closed_by == "fault"
        s._ws.transport.abort()
    assert record.texts == ["before"]


# --- the record of every connection -------------------------------------------------------


async def test_record_says_who_closed_and_why(live_emulator, live_client):
    async with live_client.aio.live.connect(model=live_emulator.model, config=TEXT) as s:
        await send_text(s, "bye")
        await turn(s)
    record = await live_emulator.recorder.wait_closed(live_emulator.recorder.last())
    while record.closed_at is None:
        await asyncio.sleep(0.01)
    # A client that left with no goAway and no fault is visible as such.
    assert (record.closed_by, record.close_code, record.go_away_sent) == ("client", 1000, False)
    assert record.opened_at < record.closed_at
    assert (record.empty_turns_sent, record.silent_turns, record.usage_updates) == (0, 0, 0)


async def test_default_profile_turn_is_unchanged(live_emulator, live_client):
    config = {"response_modalities": ["AUDIO"], "input_audio_transcription": {}}
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_audio(s, tone(0.6) + silence(0.7))
        messages = await turn(s)
    assert [m.usage_metadata is not None for m in messages].count(True) == 1
    transcripts = [m for m in messages if m.server_content.input_transcription]
    assert [m.server_content.input_transcription.text for m in transcripts] == ["[0.6 s at 440 Hz]"]
    assert messages.index(transcripts[0]) == 0  # before the reply, in one piece
    record = live_emulator.recorder.last()
    assert record.input_transcript_pieces == []
    assert record.audio_discarded_seconds == 0
