"""The realistic profile's turns: stalls, streamed input transcripts, running usage,
spoken tool calls after a preamble, and a VAD that only hears real-time audio."""

from __future__ import annotations

import asyncio

import pytest
from google.genai import types

from voice_platform.live_emulator import model, protocol
from voice_platform.live_emulator.testing import running_emulator
from voice_platform.live_emulator.transcripts import TranscriptStream
from voice_platform.live_emulator.vad import RealtimeGate

from .helpers import (
    RATE,
    audio_of,
    calm_realistic,
    flags,
    input_transcript,
    next_message,
    output_transcript,
    send_audio,
    send_text,
    silence,
    text_of,
    tone,
    turn,
)

RESUMABLE_TEXT = {"response_modalities": ["TEXT"], "session_resumption": {}}


def usages(messages: list[types.LiveServerMessage]) -> list[types.UsageMetadata]:
    return [m.usage_metadata for m in messages if m.usage_metadata]


# --- stalls -------------------------------------------------------------------------------


async def test_stall_empty_then_silent_turns_deterministic(live_emulator, live_client):
    live_emulator.fail_next(empty_turns=1, silent_turns=1)
    async with live_client.aio.live.connect(model=live_emulator.model, config=RESUMABLE_TEXT) as s:
        await send_text(s, "one")
        empty = await turn(s)
        handle = (await next_message(s)).session_resumption_update.new_handle
        await send_text(s, "two")
        with pytest.raises(TimeoutError):
            await next_message(s, within=0.4)
        # Healthy meanwhile: pongs come, and the next turn is answered.
        await asyncio.wait_for(await s._ws.ping(), 1)
        await send_text(s, "recap")
        assert text_of(await turn(s)) == "Earlier you said: one | two"
    assert [m.server_content.turn_complete for m in empty] == [True]
    assert flags(empty) == ["turn_complete"]  # no content, no generationComplete
    assert empty[0].usage_metadata.response_token_count == 0
    record = live_emulator.recorder.last()
    assert (record.empty_turns_sent, record.silent_turns) == (1, 1)
    # Google's handle after an empty turn: the user's turn is there, without a reply.
    config = {"response_modalities": ["TEXT"], "session_resumption": {"handle": handle}}
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, "recap")
        assert text_of(await turn(s)) == "Earlier you said: one"


async def stall_pattern(cert_dir, seed: int) -> list[bool]:
    async with running_emulator(
        cert_dir=cert_dir, pace=0, empty_turn_rate=0.5, random_seed=seed
    ) as emu:
        client = emu.make_client()
        async with client.aio.live.connect(
            model=emu.model, config={"response_modalities": ["TEXT"]}
        ) as s:
            pattern = []
            for index in range(8):
                await send_text(s, f"turn {index}")
                pattern.append(text_of(await turn(s)) == "")
        assert emu.recorder.last().empty_turns_sent == sum(pattern)
        return pattern


async def test_stall_rate_is_reproducible_with_a_seed(live_emulator_cert_dir):
    first = await stall_pattern(live_emulator_cert_dir, seed=3)
    assert first == await stall_pattern(live_emulator_cert_dir, seed=3)
    assert any(first)
    assert not all(first)


async def test_stall_silent_rate(live_emulator_cert_dir):
    async with running_emulator(
        cert_dir=live_emulator_cert_dir, pace=0, silent_turn_rate=1.0
    ) as emu:
        client = emu.make_client()
        async with client.aio.live.connect(
            model=emu.model, config={"response_modalities": ["TEXT"]}
        ) as s:
            await send_text(s, "hello?")
            with pytest.raises(TimeoutError):
                await next_message(s, within=0.3)
        assert emu.recorder.last().silent_turns == 1


# --- streamed input transcripts -----------------------------------------------------------

SPOKEN = {
    "response_modalities": ["AUDIO"],
    "input_audio_transcription": {},
    "output_audio_transcription": {},
}


async def test_transcript_pieces_join_to_what_was_heard(live_emulator_cert_dir):
    async with running_emulator(
        cert_dir=live_emulator_cert_dir,
        pace=2,
        input_transcript_streaming=True,
        input_transcript_lag=0.3,
    ) as emu:
        client = emu.make_client()
        async with client.aio.live.connect(model=emu.model, config=SPOKEN) as s:
            await send_audio(s, tone(1.2) + silence(0.7))
            messages = await turn(s, within=5)
        record = emu.recorder.last()
    (heard,) = record.input_transcripts
    assert heard == "[0.5 s at 440 Hz] [0.5 s at 440 Hz] [0.2 s at 440 Hz]"
    assert "".join(record.input_transcript_pieces) == heard
    assert input_transcript(messages) == heard
    assert output_transcript(messages) == f"You said: {heard}"
    pieces = [i for i, m in enumerate(messages) if m.server_content.input_transcription]
    first_audio = next(i for i, m in enumerate(messages) if m.data)
    assert len(pieces) == 3
    assert pieces[-1] > first_audio  # the last piece lagged behind the reply's start


def test_transcript_stream_segments_exactly() -> None:
    pieces: list[str] = []
    stream = TranscriptStream(silence=0.5, emit=pieces.append)
    pcm = tone(1.3) + silence(0.5)
    for start in range(0, len(pcm), 640):
        stream.feed(pcm[start : start + 640])
    assert pieces == ["[0.5 s at 440 Hz]", " [0.5 s at 440 Hz]"]  # 0.5 s of audio after each
    heard = stream.finish(tone(1.3))  # the turn, trailing silence trimmed
    assert heard == "".join(pieces) == "[0.5 s at 440 Hz] [0.5 s at 440 Hz] [0.3 s at 440 Hz]"


# --- running usage ------------------------------------------------------------------------


@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_usage_reported_several_times_per_turn(live_emulator_cert_dir, modality):
    async with running_emulator(
        cert_dir=live_emulator_cert_dir, pace=0, usage_updates_per_turn=3
    ) as emu:
        client = emu.make_client()
        config = {"response_modalities": [modality]}
        async with client.aio.live.connect(model=emu.model, config=config) as s:
            await send_text(s, "count my tokens please")
            first = await turn(s)
            await send_text(s, "again")
            second = await turn(s)
    for messages in (first, second):
        reports = usages(messages)
        assert len(reports) == 3
        responses = [u.response_token_count for u in reports]
        assert responses == sorted(responses)
        assert responses[0] > 0
        assert len({u.prompt_token_count for u in reports}) == 1  # per turn, not summed
        final = messages[-1]
        assert final.server_content.turn_complete
        assert final.usage_metadata == reports[-1]
        assert all(
            u.total_token_count == u.prompt_token_count + u.response_token_count for u in reports
        )
    # The second turn's prompt holds the first exchange: usage is per turn, not a session sum.
    assert usages(second)[-1].prompt_token_count > usages(first)[-1].prompt_token_count


# --- tool calls from spoken turns, after a preamble ---------------------------------------

LOOKUP = types.FunctionDeclaration(name="lookup", description="Look something up")


def spoken_tools(modality: str) -> types.LiveConnectConfig:
    return types.LiveConnectConfig(
        response_modalities=[modality],
        output_audio_transcription=types.AudioTranscriptionConfig(),
        session_resumption=types.SessionResumptionConfig(),
        tools=[types.Tool(function_declarations=[LOOKUP])],
    )


async def until_tool_call(session) -> list[types.LiveServerMessage]:
    received = []
    async with asyncio.timeout(5):
        async for message in session.receive():
            received.append(message)
            if message.tool_call:
                return received
    raise AssertionError("no toolCall")


@pytest.mark.parametrize("modality", ["AUDIO", "TEXT"])
async def test_audio_tool_call_after_a_preamble(live_emulator_cert_dir, modality):
    async with running_emulator(
        cert_dir=live_emulator_cert_dir,
        pace=20,
        tool_preamble=True,
        audio_tool_calls={880: 'call lookup {"q": 1}'},
    ) as emu:
        client = emu.make_client()
        async with client.aio.live.connect(model=emu.model, config=spoken_tools(modality)) as s:
            await send_audio(s, tone(0.6, freq=880) + silence(0.7))
            before = await until_tool_call(s)
            update = await next_message(s)
            (call,) = before[-1].tool_call.function_calls
            await s.send_tool_response(
                function_responses=[
                    types.FunctionResponse(id=call.id, name="lookup", response={"a": 2})
                ]
            )
            after = await turn(s)
            # A tone at another pitch is just heard and echoed.
            await send_audio(s, tone(0.6, freq=440) + silence(0.7))
            echoed = await turn(s)
    assert (call.name, call.args) == ("lookup", {"q": 1})
    assert update.session_resumption_update.resumable is False  # right after the toolCall
    said = output_transcript if modality == "AUDIO" else text_of
    assert said(before) == model.TOOL_PREAMBLE
    assert said(after) == 'Result of lookup: {"a":2}'
    assert flags(before) == []  # the preamble is part of the turn: no turnComplete yet
    if modality == "AUDIO":
        assert audio_of(before)
    assert said(echoed) == "You said: [0.6 s at 440 Hz]"


async def test_preamble_can_be_interrupted(live_emulator_cert_dir):
    # At real-time pace the preamble lasts 0.8 s: the next user turn cuts it.
    async with running_emulator(cert_dir=live_emulator_cert_dir, pace=1, tool_preamble=True) as emu:
        client = emu.make_client()
        async with client.aio.live.connect(model=emu.model, config=spoken_tools("AUDIO")) as s:
            await send_text(s, "call lookup {}")
            first = await next_message(s)
            await send_text(s, "never mind")
            interrupted = await turn(s)
            handle = await next_message(s)
    assert handle.session_resumption_update.resumable is True  # no call was pending
    assert first.data  # the preamble had started
    assert flags(interrupted)[-2:] == ["interrupted", "turn_complete"]
    assert not any(m.tool_call for m in interrupted)
    assert emu.recorder.last().tool_calls == []


# --- a VAD that hears only real-time audio ------------------------------------------------


async def test_realtime_buffer_discards_a_burst(live_emulator_cert_dir):
    async with running_emulator(
        cert_dir=live_emulator_cert_dir, pace=0, realtime_audio_buffer=1.0
    ) as emu:
        client = emu.make_client()
        config = {"response_modalities": ["TEXT"], "input_audio_transcription": {}}
        async with client.aio.live.connect(model=emu.model, config=config) as s:
            await send_audio(s, tone(3.0))  # replayed at once: ~1 s of it can be heard
            await asyncio.sleep(1.3)  # the audio clock falls back to real time
            await send_audio(s, silence(0.6))
            messages = await turn(s)
        record = emu.recorder.last()
    heard = float(input_transcript(messages).removeprefix("[").split(" s at 440 Hz]")[0])
    assert 1.05 <= heard <= 1.25  # 1 s of read-ahead, plus the frame that started it
    assert record.audio_discarded_seconds == pytest.approx(3.0 - heard, abs=0.05)


async def test_realtime_buffer_hears_audio_sent_near_real_time(live_emulator_cert_dir):
    async with running_emulator(
        cert_dir=live_emulator_cert_dir, pace=0, realtime_audio_buffer=1.0
    ) as emu:
        client = emu.make_client()
        config = {"response_modalities": ["TEXT"], "input_audio_transcription": {}}
        async with client.aio.live.connect(model=emu.model, config=config) as s:
            pcm = tone(1.0) + silence(0.6)
            step = int(0.1 * RATE) * 2
            for start in range(0, len(pcm), step):  # twice as fast as real time
                await send_audio(s, pcm[start : start + step])
                await asyncio.sleep(0.05)
            messages = await turn(s)
        record = emu.recorder.last()
    assert input_transcript(messages) == "[1.0 s at 440 Hz]"
    assert record.audio_discarded_seconds == 0


def test_realtime_gate_clock():
    gate = RealtimeGate(1.0)
    accepted = [gate.admit(0.1, now=100.0) for _ in range(30)]
    assert sum(accepted) == 11  # 0.0 .. 1.0 s ahead
    assert gate.admit(0.1, now=102.0)  # the clock never runs behind real time
    assert RealtimeGate(None).admit(100.0, now=0.0)


def test_usage_update_is_a_bare_usage_message():
    assert protocol.usage_update({"totalTokenCount": 3}) == {
        "usageMetadata": {"totalTokenCount": 3}
    }


# --- all together -------------------------------------------------------------------------


async def test_realistic_profile_spoken_turn_end_to_end(live_emulator_cert_dir):
    # Stalls and refusals off: this checks that the other knobs work together.
    async with calm_realistic(live_emulator_cert_dir) as emu:
        client = emu.make_client()
        async with client.aio.live.connect(model=emu.model, config=SPOKEN) as s:
            pcm = tone(1.2) + silence(0.7)
            step = int(0.1 * RATE) * 2
            for start in range(0, len(pcm), step):  # twice real time: within the buffer
                await send_audio(s, pcm[start : start + step])
                await asyncio.sleep(0.05)
            messages = await turn(s, within=5)
            while input_transcript(messages).count("[") < 3:  # the last piece may lag
                messages.append(await next_message(s))
        record = emu.recorder.last()
    (heard,) = record.input_transcripts
    assert input_transcript(messages) == heard
    assert output_transcript(messages) == f"You said: {heard}"
    assert len(usages(messages)) == 3
    assert record.audio_discarded_seconds == 0
