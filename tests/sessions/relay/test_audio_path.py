"""The audio hot path must say on the wire exactly what the SDK says, and hand every
message it does not take to the SDK unchanged and in order."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
from google import genai
from google.genai import types
from google.genai.live import AsyncSession

from sessions.relay.audio_path import AudioTap, model_audio_of, realtime_audio_json
from sessions.relay.sdk_adapter import send_audio_frame, tap_model_audio
from voice_platform.live_emulator import protocol

# Every byte value, odd length, and chunks whose base64 uses the characters that differ
# between the standard and URL-safe alphabets.
PCM_SAMPLES = [bytes(range(256)) * 12 + b"\x01", b"\xfb\xff\xbf" * 1000, os.urandom(4800)]


class FakeWs:
    """A socket that records what is sent and replays scripted incoming frames."""

    def __init__(self, incoming: list[bytes] | None = None) -> None:
        self.sent: list[str] = []
        self.incoming = list(incoming or [])
        self.transport = None

    async def send(self, text: str) -> None:
        self.sent.append(text)

    async def recv(self, decode: bool | None = None) -> bytes:
        if not self.incoming:
            await asyncio.Event().wait()  # nothing more: block like a quiet socket
        return self.incoming.pop(0)


def sdk_session(ws: Any) -> AsyncSession:
    client = genai.Client(api_key="test-key")
    return AsyncSession(api_client=client._api_client, websocket=ws)


def raw(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


@pytest.mark.parametrize("pcm", PCM_SAMPLES)
async def test_realtime_audio_json_is_byte_for_byte_what_the_sdk_sends(pcm: bytes) -> None:
    ws = FakeWs()
    await sdk_session(ws).send_realtime_input(
        audio=types.Blob(data=pcm, mime_type="audio/pcm;rate=16000")
    )
    assert realtime_audio_json(pcm) == ws.sent[0]


@pytest.mark.parametrize("tapped", [True, False])
async def test_send_audio_writes_the_sdk_frame_either_way(tapped: bool) -> None:
    ws = FakeWs()
    session = sdk_session(ws)
    if tapped:

        async def on_audio(pcm: bytes) -> None:
            return None

        assert tap_model_audio(session, on_audio)
    await send_audio_frame(session, PCM_SAMPLES[0])
    assert ws.sent == [realtime_audio_json(PCM_SAMPLES[0])]


@pytest.mark.parametrize("pcm", PCM_SAMPLES)
async def test_model_audio_of_decodes_what_the_sdk_decodes(pcm: bytes) -> None:
    message = raw(protocol.model_audio(pcm))
    parsed = await sdk_session(FakeWs([message]))._receive()
    sdk_pcm = parsed.server_content.model_turn.parts[0].inline_data.data  # type: ignore[union-attr,index]
    assert model_audio_of(message) == sdk_pcm == pcm
    # URL-safe and unpadded base64 too, as the SDK accepts.
    inline = protocol.model_audio(pcm)["serverContent"]["modelTurn"]["parts"][0]["inlineData"]
    inline["data"] = inline["data"].replace("+", "-").replace("/", "_").rstrip("=")
    urlsafe = raw({"serverContent": {"modelTurn": {"parts": [{"inlineData": inline}]}}})
    assert model_audio_of(urlsafe) == pcm


@pytest.mark.parametrize(
    "message",
    [
        protocol.model_text("hi"),
        protocol.output_transcription("hi"),
        protocol.turn_complete({"totalTokenCount": 3}),
        protocol.interrupted(),
        protocol.tool_call([{"id": "c1", "name": "f", "args": {}}]),
        protocol.resumption_update("h1"),
        protocol.go_away(5),
        protocol.setup_complete(),
        # Audio with anything else beside it is the SDK's to parse.
        {**protocol.model_audio(b"\x00\x01"), "usageMetadata": {"totalTokenCount": 1}},
        {"serverContent": {**protocol.model_audio(b"\x00\x01")["serverContent"],
                           "turnComplete": True}},
        {"serverContent": {"modelTurn": {"parts": [
            {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": "AAE="}},
            {"text": "and text"}]}}},
        {"serverContent": {"modelTurn": {"parts": [
            {"inlineData": {"mimeType": "image/png", "data": "AAE="}}]}}},
    ],
)  # fmt: skip
def test_model_audio_of_leaves_every_other_message_to_the_sdk(message: dict[str, Any]) -> None:
    assert model_audio_of(raw(message)) is None


def test_model_audio_of_leaves_malformed_input_to_the_sdk() -> None:
    assert model_audio_of(b"not json") is None
    assert model_audio_of(b"[1, 2]") is None
    bad = {"serverContent": {"modelTurn": {"parts": [
        {"inlineData": {"mimeType": "audio/pcm", "data": "@@@"}}]}}}  # fmt: skip
    assert model_audio_of(raw(bad)) is None


async def test_tap_keeps_the_order_of_audio_and_other_messages() -> None:
    script = [
        protocol.model_audio(b"\x01\x00"),
        protocol.output_transcription("hello"),
        protocol.model_audio(b"\x02\x00"),
        protocol.model_audio(b"\x03\x00"),
        protocol.turn_complete({"totalTokenCount": 3}),
    ]
    session = sdk_session(FakeWs([raw(m) for m in script]))
    seen: list[Any] = []

    async def on_audio(pcm: bytes) -> None:
        seen.append(pcm)

    assert tap_model_audio(session, on_audio)
    assert isinstance(session._ws, AudioTap)
    async for message in session.receive():  # ends after turn_complete, like the SDK's
        seen.append(message)
    assert seen[0] == b"\x01\x00"
    assert seen[1].server_content.output_transcription.text == "hello"
    assert seen[2:4] == [b"\x02\x00", b"\x03\x00"]
    assert seen[4].server_content.turn_complete is True
    assert seen[4].usage_metadata.total_token_count == 3


def test_tap_falls_back_when_the_sdk_session_has_no_socket() -> None:
    class Opaque:
        pass

    async def on_audio(pcm: bytes) -> None:
        return None

    session = Opaque()
    assert not tap_model_audio(session, on_audio)
    assert not hasattr(session, "_ws")
