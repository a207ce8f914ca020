"""Bench loopback (`echo_frames`): every audio chunk comes straight back, stamped."""

from __future__ import annotations

import struct
import time

import pytest
from google.genai import types

from voice_platform.live_emulator import echo

from .helpers import next_message, tone


@pytest.fixture
def live_emulator_settings():
    return {"pace": 1.0, "echo_frames": True}


def frame(seq: int, size: int = 3200) -> bytes:
    head = struct.pack("<QQ", seq, time.monotonic_ns())
    return head + tone(size / 32_000)[len(head) : size]


async def test_each_audio_chunk_is_echoed_at_once_with_its_receipt_time(live_emulator, live_client):
    config = {"response_modalities": ["AUDIO"]}
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        for seq in range(5):
            sent = frame(seq)
            before = time.monotonic_ns()
            await s.send_realtime_input(
                audio=types.Blob(data=sent, mime_type="audio/pcm;rate=16000")
            )
            message = await next_message(s, within=2.0)
            after = time.monotonic_ns()
            back = message.data
            assert back is not None
            assert len(back) == len(sent)
            # The sender's bytes and the audio survive; only the stamp is new.
            assert back[: echo.STAMP_OFFSET] == sent[: echo.STAMP_OFFSET]
            assert back[echo.STAMP_END :] == sent[echo.STAMP_END :]
            received = echo.read_stamp(back)
            assert received is not None
            assert before <= received <= after
            content = message.server_content
            assert content is not None
            assert content.model_turn is not None
            parts = content.model_turn.parts or []
            assert len(parts) == 1
            assert parts[0].inline_data is not None
            assert parts[0].inline_data.mime_type == "audio/pcm;rate=24000"
            assert not content.turn_complete
    record = live_emulator.recorder.last()
    assert record.audio_bytes == 5 * 3200
    # Loud audio went to the echo, not to the VAD: no turn, no transcript.
    assert record.input_transcripts == []
    assert not any("turnComplete" in (m.get("serverContent") or {}) for m in record.sent)


async def test_short_chunks_come_back_unchanged(live_emulator, live_client):
    async with live_client.aio.live.connect(model=live_emulator.model, config={}) as s:
        await s.send_realtime_input(audio=types.Blob(data=b"\x01\x02" * 4, mime_type="audio/pcm"))
        message = await next_message(s, within=2.0)
    assert message.data == b"\x01\x02" * 4


def test_stamp_round_trip():
    pcm = bytes(range(32))
    stamped = echo.stamp(pcm, 123456789)
    assert echo.read_stamp(stamped) == 123456789
    assert stamped[:16] == pcm[:16]
    assert stamped[24:] == pcm[24:]
    assert echo.read_stamp(b"short") is None


def test_off_by_default():
    from voice_platform.live_emulator.config import EmulatorConfig

    assert EmulatorConfig().echo_frames is False
