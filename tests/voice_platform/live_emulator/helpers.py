"""Client-side helpers: everything goes through the real SDK's public API."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from google.genai import types

from voice_client.audio import silence as silence  # re-exported: the tests' speech and pauses
from voice_client.audio import tone as tone
from voice_platform.live_emulator.testing import RunningEmulator, running_emulator

RATE = 16_000
FRAME_S = 0.1


async def send_audio(session, pcm: bytes, frame_s: float = FRAME_S) -> None:
    step = int(frame_s * RATE) * 2
    for start in range(0, len(pcm), step):
        await session.send_realtime_input(
            audio=types.Blob(data=pcm[start : start + step], mime_type="audio/pcm;rate=16000")
        )


async def send_text(session, text: str) -> None:
    await session.send_client_content(
        turns=types.Content(role="user", parts=[types.Part(text=text)])
    )


async def turn(session, within: float = 10.0) -> list[types.LiveServerMessage]:
    """All messages up to and including the next turnComplete."""

    async def collect() -> list[types.LiveServerMessage]:
        return [message async for message in session.receive()]

    return await asyncio.wait_for(collect(), within)


async def next_message(session, within: float = 5.0) -> types.LiveServerMessage:
    async def first() -> types.LiveServerMessage:
        async for message in session.receive():
            return message
        raise AssertionError("receive() ended without a message")

    return await asyncio.wait_for(first(), within)


def text_of(messages: list[types.LiveServerMessage]) -> str:
    return "".join(m.text or "" for m in messages if m.server_content)


def audio_of(messages: list[types.LiveServerMessage]) -> bytes:
    return b"".join(m.data or b"" for m in messages if m.server_content)


def output_transcript(messages: list[types.LiveServerMessage]) -> str:
    return "".join(
        m.server_content.output_transcription.text or ""
        for m in messages
        if m.server_content and m.server_content.output_transcription
    )


def input_transcript(messages: list[types.LiveServerMessage]) -> str:
    return "".join(
        m.server_content.input_transcription.text or ""
        for m in messages
        if m.server_content and m.server_content.input_transcription
    )


def usage(messages: list[types.LiveServerMessage]) -> types.UsageMetadata:
    found = [m.usage_metadata for m in messages if m.usage_metadata]
    assert len(found) == 1, "exactly one usageMetadata per turn"
    return found[0]


def flags(messages: list[types.LiveServerMessage]) -> list[str]:
    """Names of the serverContent flags in arrival order (interrupted, generationComplete...)."""
    out = []
    for m in messages:
        sc = m.server_content
        if sc is None:
            continue
        for name in ("interrupted", "generation_complete", "turn_complete"):
            if getattr(sc, name):
                out.append(name)
    return out


def calm_realistic(
    cert_dir: Path, **overrides: Any
) -> AbstractAsyncContextManager[RunningEmulator]:
    """The realistic profile at time scale 60 and pace 20, without random stalls (for a
    test about something else)."""
    settings: dict[str, Any] = {
        "cert_dir": cert_dir, "profile": "realistic", "time_scale": 60, "pace": 20,
        "empty_turn_rate": 0, "silent_turn_rate": 0, **overrides,
    }  # fmt: skip
    return running_emulator(**settings)
