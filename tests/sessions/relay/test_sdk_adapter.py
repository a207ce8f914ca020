"""The SDK adapter: its start-up check judges the installed SDK, and both of its paths (the
private socket and the SDK's public methods) carry a real session against the emulator."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core import checks
from google.genai import types
from google.genai.live import AsyncSession

from sessions.relay import sdk_adapter
from sessions.relay.audio_path import AudioTap
from sessions.relay.upstream import LiveUpstream, UpstreamSettings, UpstreamState
from tests.factories import AgentFactory
from tests.sessions.conftest import issue_token, open_client, silence, speak, tone
from voice_platform.live_emulator import audio as emu_audio

MODES = ["fast", "fallback"]


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test probes anew; the process's own verdict comes back afterwards."""
    monkeypatch.setattr(sdk_adapter, "_support", None)


def force_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a failed probe leaves behind: every session takes the SDK's public methods."""
    failed = sdk_adapter.SdkSupport(sdk_adapter.VERIFIED_VERSION, False, "forced by a test")
    monkeypatch.setattr(sdk_adapter, "_support", failed)


@pytest.fixture
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "fallback":
        force_fallback(monkeypatch)
    return str(request.param)


@pytest.fixture
def sdk_sends(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every ``send_realtime_input`` call, passed on to the real method."""
    sdk_adapter.support()  # probe first: the probe's own send is no session's
    calls: list[Any] = []
    real = AsyncSession.send_realtime_input

    async def spy(self: AsyncSession, **kwargs: Any) -> None:
        calls.append(kwargs)
        await real(self, **kwargs)

    monkeypatch.setattr(AsyncSession, "send_realtime_input", spy)
    return calls


def our_messages() -> list[checks.CheckMessage]:
    found = checks.run_checks(tags=[checks.Tags.compatibility])
    return [m for m in found if str(m.id).startswith("voice_sessions.")]


# --- the system check -------------------------------------------------------------------


def test_sdk_adapter_check_passes_on_the_installed_sdk() -> None:
    assert our_messages() == []
    support = sdk_adapter.support()
    assert support.internals, support.problem
    assert support.version == sdk_adapter.VERIFIED_VERSION


def test_sdk_adapter_check_errors_when_asyncsession_moves_its_socket(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def init(self: AsyncSession, api_client: Any, websocket: Any, **kwargs: Any) -> None:
        self._api_client = api_client
        self._connection = websocket  # a future SDK renames the attribute

    monkeypatch.setattr(AsyncSession, "__init__", init)
    with caplog.at_level(logging.ERROR, logger=sdk_adapter.__name__):
        [message] = our_messages()
        assert our_messages() == [message]  # probed once, logged once
    assert message.id == "voice_sessions.E001"
    assert message.level == checks.ERROR
    assert "no longer keeps its socket at _ws" in message.msg
    assert "will use the SDK's public methods" in message.msg
    assert message.hint == "Pin google-genai==3.6.1 or update sessions/relay/sdk_adapter.py."
    assert len(caplog.records) == 1


def test_sdk_adapter_check_errors_when_the_sdk_frames_audio_differently(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def camel_case(self: AsyncSession, *, audio: types.Blob) -> None:
        data = {"data": "", "mimeType": audio.mime_type}  # a future SDK switches to camelCase
        await self._ws.send(json.dumps({"realtimeInput": {"audio": data}}))

    monkeypatch.setattr(AsyncSession, "send_realtime_input", camel_case)
    [message] = our_messages()
    assert message.id == "voice_sessions.E001"
    assert "no longer writes realtime_audio_json()" in message.msg


def test_sdk_adapter_check_errors_when_the_sdk_reads_past_the_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def receive(self: AsyncSession) -> AsyncIterator[types.LiveServerMessage]:
        underneath = self._ws._inner if isinstance(self._ws, AudioTap) else self._ws
        while raw := await underneath.recv():  # a future SDK reads from elsewhere
            message = types.LiveServerMessage.model_validate(json.loads(raw))
            yield message
            if message.server_content and message.server_content.turn_complete:
                return

    monkeypatch.setattr(AsyncSession, "receive", receive)
    [message] = our_messages()
    assert message.id == "voice_sessions.E001"
    assert "receive() no longer reads its messages through _ws.recv" in message.msg
    assert not sdk_adapter.support().internals


def test_sdk_adapter_check_warns_on_another_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sdk_adapter, "VERIFIED_VERSION", "3.5.0")
    [message] = our_messages()
    assert message.id == "voice_sessions.W001"
    assert message.level == checks.WARNING
    assert "google-genai 3.6.1 is not the version" in message.msg
    assert "(3.5.0)" in message.msg
    assert sdk_adapter.support().internals  # only a warning: the probe passed


# --- both paths, end to end through the real SDK and the emulator ------------------------


class Listener:
    """What LiveUpstream hands on, split by the way model audio came."""

    def __init__(self) -> None:
        self.tapped = bytearray()  # on_upstream_audio: taken off the socket
        self.parsed = bytearray()  # inside a LiveServerMessage: the SDK's parser
        self.heard: list[str] = []
        self.turns = 0
        self.states: list[tuple[UpstreamState, str]] = []

    async def on_upstream_message(self, message: types.LiveServerMessage) -> None:
        content = message.server_content
        if content is None:
            return
        parts = content.model_turn.parts if content.model_turn else None
        for part in parts or []:
            if part.inline_data is not None and part.inline_data.data:
                self.parsed += part.inline_data.data
        if content.input_transcription and content.input_transcription.text:
            self.heard.append(content.input_transcription.text)
        self.turns += content.turn_complete is True

    async def on_upstream_audio(self, pcm: bytes) -> None:
        self.tapped += pcm

    async def on_upstream_state(self, state: UpstreamState, reason: str) -> None:
        self.states.append((state, reason))

    async def until_turns(self, count: int) -> None:
        async with asyncio.timeout(10):
            while self.turns < count:
                await asyncio.sleep(0.01)

    def audio(self, mode: str) -> tuple[bytes, bytes]:
        """(model audio by the way ``mode`` should bring it, model audio by the other way)."""
        if mode == "fast":
            return bytes(self.tapped), bytes(self.parsed)
        return bytes(self.parsed), bytes(self.tapped)


@asynccontextmanager
async def sdk_session(live_emulator: Any) -> AsyncIterator[AsyncSession]:
    client = live_emulator.make_client()  # referenced until the end: see make_client
    async with client.aio.live.connect(model=live_emulator.model) as session:
        yield session


@pytest.mark.parametrize("mode", MODES, indirect=True)
async def test_sdk_adapter_carries_audio_both_ways(
    mode: str, live_emulator: Any, sdk_sends: list[Any]
) -> None:
    client = live_emulator.make_client()
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        input_audio_transcription=types.AudioTranscriptionConfig(),
    )

    def connect(handle: str | None) -> AbstractAsyncContextManager[AsyncSession]:
        return client.aio.live.connect(model=live_emulator.model, config=config)

    listener = Listener()
    upstream = LiveUpstream(
        connect=connect, listener=listener,
        settings=UpstreamSettings(ping_interval=0.2, reply_timeout=1.0, idle_timeout=2.0),
    )  # fmt: skip
    upstream.start()
    try:
        session = await upstream.wait_ready()
        assert isinstance(session._ws, AudioTap) is (mode == "fast")
        speech = silence(300) + tone(800) + silence(700)
        frames = [speech[i : i + 3200] for i in range(0, len(speech), 3200)]
        for frame in frames:
            await sdk_adapter.send_audio_frame(session, frame)
        await listener.until_turns(1)
        # Up: every byte reached "Google", and it heard the tone that was sent.
        assert live_emulator.recorder.last().audio_bytes == len(speech)
        assert listener.heard == [emu_audio.describe(tone(800))]
        assert len(sdk_sends) == (0 if mode == "fast" else len(frames))
        echo, elsewhere = listener.audio(mode)
        assert len(echo) > 24_000, "the emulator echoes the 0.8 s of speech"
        assert not elsewhere
        # Down: a text turn's spoken reply is known to the byte.
        listener.tapped.clear()
        listener.parsed.clear()
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="hello")])
        )
        await listener.until_turns(2)
        expected = emu_audio.synthesize("You said: hello", live_emulator.config.speech_ms_per_char)
        reply, elsewhere = listener.audio(mode)
        assert reply == expected
        assert not elsewhere
        await asyncio.sleep(0.5)  # a few watchdog intervals: no ping may end the connection
        assert upstream.connections == 1
        assert [s for s, _ in listener.states] == [UpstreamState.CONNECTING, UpstreamState.READY]
    finally:
        await upstream.stop()


@pytest.mark.parametrize("mode", MODES, indirect=True)
async def test_sdk_adapter_ping_and_backpressure(mode: str, live_emulator: Any) -> None:
    async with sdk_session(live_emulator) as session:

        async def on_audio(pcm: bytes) -> None:
            return None

        assert sdk_adapter.tap_model_audio(session, on_audio) is (mode == "fast")
        ping = sdk_adapter.pinger(session)
        if mode == "fast":
            assert ping is not None
            await asyncio.wait_for(ping(), 2)  # a real pong from the emulator
            assert sdk_adapter.socket_backed_up(session) is False
        else:
            assert ping is None
            assert sdk_adapter.socket_backed_up(session) is True  # unknown: queue it


@pytest.mark.parametrize("mode", MODES, indirect=True)
async def test_sdk_adapter_abort_ends_the_connection(mode: str, live_emulator: Any) -> None:
    async with sdk_session(live_emulator) as session:

        async def on_audio(pcm: bytes) -> None:
            return None

        sdk_adapter.tap_model_audio(session, on_audio)
        await sdk_adapter.abort(session)
        record = await live_emulator.recorder.wait_closed(live_emulator.recorder.last(), 2)
    # Dropped without a close frame on the fast path, a clean close on the public one.
    assert record.close_code == (1006 if mode == "fast" else 1000)


@pytest.mark.django_db(transaction=True)
async def test_sdk_adapter_fallback_carries_a_voice_session(
    alice: Any,
    live_settings: Any,
    live_emulator: Any,
    sdk_sends: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The consumer, bridge and upstream on the SDK's public methods only."""
    force_fallback(monkeypatch)
    agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, input_transcription=True
    )
    client = await open_client(f"token={await issue_token(agent)}")
    await client.until("session.started")
    await speak(client)
    await client.until("turn_complete")
    assert client.texts("transcript.input") == emu_audio.describe(tone(600))
    assert len(b"".join(client.audio)) > 24_000, "the echo of 0.6 s of speech"
    # The burst goes up at real time (the pacer): wait for its tail before closing.
    async with asyncio.timeout(3):
        while live_emulator.recorder.last().audio_bytes < 13 * 3200:
            await asyncio.sleep(0.05)
    await client.send(type="close")
    assert await client.until_closed() == 1000
    assert live_emulator.recorder.last().audio_bytes == 13 * 3200
    assert len(sdk_sends) == 13  # every frame through the SDK's public method
