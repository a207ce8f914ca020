"""Text and audio turns, transcriptions, VAD and barge-in, driven by the real SDK."""

from __future__ import annotations

import asyncio

import pytest
from google.genai import types

from voice_platform.live_emulator import audio as emu_audio

from .helpers import (
    audio_of,
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
    usage,
)


async def test_text_turn_text_modality_streams_the_echo(live_emulator, live_client):
    config = {"response_modalities": ["TEXT"]}
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        assert s.setup_complete is not None
        await send_text(s, "hello there emulator")
        messages = await turn(s)
    parts = [m.text for m in messages if m.text]
    assert "".join(parts) == "You said: hello there emulator"
    assert len(parts) > 1, "text is streamed in several parts"
    assert flags(messages)[-2:] == ["generation_complete", "turn_complete"]
    record = live_emulator.recorder.last()
    assert record.texts == ["hello there emulator"]


async def test_text_turn_audio_modality_speaks_and_transcribes(live_emulator, live_client):
    config = {"response_modalities": ["AUDIO"], "output_audio_transcription": {}}
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, "hello")
        messages = await turn(s)
    pcm = audio_of(messages)
    expected = emu_audio.synthesize("You said: hello", live_emulator.config.speech_ms_per_char)
    assert pcm == expected
    chunks = [m.data for m in messages if m.data]
    assert max(len(c) for c in chunks) == 24_000 * 2 * live_emulator.config.chunk_ms // 1000
    mimes = {
        p.inline_data.mime_type
        for m in messages
        if m.server_content and m.server_content.model_turn
        for p in m.server_content.model_turn.parts
    }
    assert mimes == {"audio/pcm;rate=24000"}
    assert output_transcript(messages) == "You said: hello"


async def test_text_turn_without_transcription_config_sends_none(live_emulator, live_client):
    async with live_client.aio.live.connect(model=live_emulator.model) as s:
        await send_text(s, "hi")
        messages = await turn(s)
    assert audio_of(messages)
    assert output_transcript(messages) == ""


async def test_realtime_text_is_a_turn(live_emulator, live_client):
    config = {"response_modalities": ["TEXT"]}
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await s.send_realtime_input(text="typed words")
        messages = await turn(s)
    assert text_of(messages) == "You said: typed words"


async def test_audio_turn_vad_ends_on_silence_and_echoes(live_emulator, live_client):
    config = {
        "response_modalities": ["AUDIO"],
        "input_audio_transcription": {},
        "output_audio_transcription": {},
    }
    speech = tone(0.8, 440)
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_audio(s, silence(0.3) + speech + silence(0.7))
        messages = await turn(s)
    heard = emu_audio.describe(speech)
    assert heard == "[0.8 s at 440 Hz]"
    assert input_transcript(messages) == heard
    assert output_transcript(messages) == f"You said: {heard}"
    reply_seconds = len(audio_of(messages)) / 2 / 24_000
    # The echo is the speech (plus a few VAD windows), without the trailing silence.
    assert 0.75 <= reply_seconds <= 1.0
    record = live_emulator.recorder.last()
    assert record.audio_seconds == pytest.approx(1.8, abs=0.01)
    assert record.input_transcripts == [heard]


async def test_audio_turn_text_modality_answers_in_text(live_emulator, live_client):
    config = {"response_modalities": ["TEXT"]}
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_audio(s, tone(0.5, 300) + silence(0.7))
        messages = await turn(s)
    assert text_of(messages) == f"You said: {emu_audio.describe(tone(0.5, 300))}"


async def test_audio_turn_ends_on_audio_stream_end(live_emulator, live_client):
    config = {"response_modalities": ["TEXT"]}
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_audio(s, tone(0.6, 500))
        await s.send_realtime_input(audio_stream_end=True)
        messages = await turn(s)
    assert text_of(messages) == "You said: [0.6 s at 500 Hz]"


async def test_audio_turn_silence_only_is_not_a_turn(live_emulator, live_client):
    config = {"response_modalities": ["TEXT"]}
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_audio(s, silence(1.0))
        await s.send_realtime_input(audio_stream_end=True)
        with pytest.raises(TimeoutError):
            await next_message(s, within=0.3)
        await send_text(s, "still here")
        assert text_of(await turn(s)) == "You said: still here"


async def test_audio_turn_manual_vad_uses_activity_signals(live_emulator, live_client):
    config = types.LiveConnectConfig(
        response_modalities=["TEXT"],
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
        ),
    )
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await s.send_realtime_input(activity_start=types.ActivityStart())
        # Silence included: with VAD off only activityEnd ends the turn.
        spoken = tone(0.4, 600) + silence(1.0)
        await send_audio(s, spoken)
        with pytest.raises(TimeoutError):
            await next_message(s, within=0.3)
        await s.send_realtime_input(activity_end=types.ActivityEnd())
        messages = await turn(s)
    # Everything between the two signals is the turn, silence included.
    assert text_of(messages) == f"You said: {emu_audio.describe(spoken)}"
    assert emu_audio.describe(spoken).startswith("[1.4 s")


async def test_audio_turn_vad_silence_duration_from_setup(live_emulator, live_client):
    config = types.LiveConnectConfig(
        response_modalities=["TEXT"],
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(silence_duration_ms=1500)
        ),
    )
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_audio(s, tone(0.4) + silence(1.0))
        with pytest.raises(TimeoutError):
            await next_message(s, within=0.3)
        await send_audio(s, silence(0.6))
        assert text_of(await turn(s)).startswith("You said: [0.4 s")


async def test_barge_in_interrupts_reply(live_emulator, live_client):
    # This connection replies in real time so that the reply is still playing.
    config = types.LiveConnectConfig(
        response_modalities=["AUDIO"],
        http_options=types.HttpOptions(headers=live_emulator.faults_header(pace=1.0)),
    )
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, "tell me a long story about the sea")
        first = await next_message(s)
        assert first.data
        await send_audio(s, tone(0.3))
        messages = [first, *await turn(s)]
        assert "interrupted" in flags(messages)
        assert "generation_complete" not in flags(messages)
        full = len(emu_audio.synthesize("You said: tell me a long story about the sea", 60))
        assert len(audio_of(messages)) < full / 2
        # The speech that interrupted is itself a turn, answered once it ends.
        await send_audio(s, silence(0.7))
        assert audio_of(await turn(s))


async def test_barge_in_by_text_interrupts_reply(live_emulator, live_client):
    config = types.LiveConnectConfig(
        response_modalities=["TEXT"],
        http_options=types.HttpOptions(headers=live_emulator.faults_header(pace=0.2)),
    )
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, "one two three four five six")
        first = await next_message(s)
        await send_text(s, "stop")
        interrupted = [first, *await turn(s)]
        assert flags(interrupted) == ["interrupted", "turn_complete"]
        assert text_of(await turn(s)) == "You said: stop"


async def test_usage_counts_system_instruction_history_and_audio(live_emulator, live_client):
    system = "You are a very helpful assistant that answers briefly. " * 4
    base_cfg = {"response_modalities": ["TEXT"]}
    sys_cfg = {**base_cfg, "system_instruction": system}
    async with live_client.aio.live.connect(model=live_emulator.model, config=base_cfg) as s:
        await send_text(s, "hello")
        plain = usage(await turn(s))
        await send_text(s, "hello")
        second = usage(await turn(s))
        await send_audio(s, tone(1.0) + silence(0.6))
        with_audio = usage(await turn(s))
    async with live_client.aio.live.connect(model=live_emulator.model, config=sys_cfg) as s:
        await send_text(s, "hello")
        with_system = usage(await turn(s))
    assert plain.total_token_count == plain.prompt_token_count + plain.response_token_count
    assert plain.response_token_count > 0
    assert with_system.prompt_token_count - plain.prompt_token_count == len(system) // 4
    # The second turn's prompt also holds the first exchange.
    assert second.prompt_token_count > plain.prompt_token_count
    audio_details = {
        d.modality.value: d.token_count for d in with_audio.prompt_tokens_details or []
    }
    assert audio_details["AUDIO"] == live_emulator.config.audio_tokens_per_second


async def test_frames_are_binary_camelcase_and_small(live_emulator, live_client):
    config = {"response_modalities": ["AUDIO"]}
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, "x" * 400)
        await turn(s)
    sent = live_emulator.recorder.last().sent
    allowed = {
        "setupComplete",
        "serverContent",
        "usageMetadata",
        "toolCall",
        "toolCallCancellation",
        "sessionResumptionUpdate",
        "goAway",
    }
    assert all(set(m) <= allowed for m in sent)
    assert all("_" not in key for m in sent for key in m)


async def test_context_update_changes_system_instruction(live_emulator, live_client):
    config = {"response_modalities": ["TEXT"]}
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, "a")
        before = usage(await turn(s)).prompt_token_count
        await s.send_context_update(system_instruction="z" * 400)
        await send_text(s, "a")
        after = usage(await turn(s)).prompt_token_count
    await asyncio.sleep(0)
    assert after >= before + 100
