"""End-to-end harness: the real consumer (Channels communicator), the real SDK, the emulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from jsonschema import Draft202012Validator

from conftest import require_postgres, require_redis
from sessions.protocol_schema import SCHEMA_PATH, event_problems
from sessions.routing import websocket_urlpatterns
from sessions.tokens import client_token_issue
from tests.processes import live_env, start_daphne, stop_processes
from voice_client import audio
from voice_platform.tenancy.scope import tenant_scope

APP = URLRouter(websocket_urlpatterns)
_SCHEMA = json.loads(SCHEMA_PATH.read_text())
# The whole unions, as a client of the protocol would check frames: any member may match.
_UNIONS = {
    union: Draft202012Validator({"$defs": _SCHEMA["$defs"], "$ref": f"#/$defs/{union}"})
    for union in ("clientMessage", "serverEvent")
}


def assert_protocol(frame: Any, union: str) -> None:
    """Fail the test when a JSON frame is not a ``union`` member of the protocol schema."""
    if not _UNIONS[union].is_valid(frame):
        problems = event_problems(frame, union=union) or ["matches no single member"]
        pytest.fail(f"{union} off the protocol schema: {frame!r}: {'; '.join(problems)}")


@pytest_asyncio.fixture
async def no_leaked_tasks():
    """Every session a test opened must have ended its tasks by the test's end."""
    yield
    await asyncio.sleep(0.05)
    leaked = [
        t
        for t in asyncio.all_tasks()
        if not t.done()
        and t.get_name().startswith(("bridge-", "live-"))
        and not t.get_name().startswith("live-emulator")  # the emulator stops after this
    ]
    for task in leaked:
        task.cancel()
    assert not leaked, f"tasks left behind: {[t.get_name() for t in leaked]}"


@pytest.fixture
def live_settings(settings, live_emulator, no_leaked_tasks):
    settings.LIVE_API_BASE_URL = live_emulator.base_url
    settings.LIVE_API_CA_FILE = str(live_emulator.cert_path)
    settings.GEMINI_API_KEY = "test-key"
    settings.LIVE_PING_INTERVAL = 0.5
    return settings


@database_sync_to_async
def issue_token(agent, **kwargs: Any) -> str:
    with tenant_scope(agent.tenant_id):
        return client_token_issue(
            tenant=agent.tenant, agent=agent, end_user_id=kwargs.pop("user", "u1"), **kwargs
        ).raw


@dataclass
class Client:
    """A test end user: a communicator plus everything it received, in order.

    Every JSON frame it sends or receives is checked against sessions/protocol.schema.json (a
    mismatch fails the test); ``send_raw`` is the one way to send a deliberately bad one."""

    comm: WebsocketCommunicator
    events: list[dict[str, Any]] = field(default_factory=list)
    audio: list[bytes] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str | None = None

    async def recv(self, timeout: float = 10) -> dict[str, Any] | bytes | None:
        message = await self.comm.receive_output(timeout)
        if message["type"] == "websocket.close":
            self.close_code = message.get("code", 1000)
            self.close_reason = message.get("reason")
            return None
        if message.get("bytes") is not None:
            self.audio.append(message["bytes"])
            self.order.append("audio")
            return message["bytes"]
        event = json.loads(message["text"])
        assert_protocol(event, "serverEvent")
        self.events.append(event)
        self.order.append(event["type"])
        return event

    async def until(self, kind: str, timeout: float = 15) -> dict[str, Any]:
        """Receive until an event of ``kind`` (or fail), keeping everything received."""
        async with asyncio.timeout(timeout):
            while True:
                got = await self.recv(timeout)
                if got is None:
                    raise AssertionError(f"closed ({self.close_code}) before {kind}: {self.order}")
                if isinstance(got, dict) and got["type"] == kind:
                    return got

    async def until_closed(self, timeout: float = 15) -> int:
        async with asyncio.timeout(timeout):
            while self.close_code is None:
                await self.recv(timeout)
        return self.close_code

    async def send(self, **event: Any) -> None:
        assert_protocol(event, "clientMessage")
        await self.comm.send_to(text_data=json.dumps(event))

    async def send_raw(self, text: str) -> None:
        """A text frame as it is, unchecked: for tests of bad input."""
        await self.comm.send_to(text_data=text)

    async def send_audio(self, pcm: bytes) -> None:
        await self.comm.send_to(bytes_data=pcm)

    def texts(self, kind: str) -> str:
        return "".join(e.get("text", "") for e in self.events if e["type"] == kind)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


async def open_client(query: str, origin: str | None = None) -> Client:
    headers = [(b"origin", origin.encode())] if origin else []
    comm = WebsocketCommunicator(APP, f"/ws/v1/live?{query}", headers=headers)
    connected, _ = await comm.connect(timeout=10)
    assert connected
    return Client(comm)


def tone(ms: int, amplitude: int = 8000, freq: float = 440.0) -> bytes:
    """16 kHz PCM16 LE sine: loud enough for any energy VAD (the shared audio utilities)."""
    return audio.tone(ms / 1000, freq, amplitude / 32767)


def silence(ms: int) -> bytes:
    return audio.silence(ms / 1000)


async def speak(client: Client, speech_ms: int = 600, silence_ms: int = 700) -> None:
    """Stream an utterance in 100 ms frames, then silence for the VAD to end the turn."""
    for chunk in range(0, speech_ms, 100):
        await client.send_audio(tone(min(100, speech_ms - chunk)))
    for _ in range(0, silence_ms, 100):
        await client.send_audio(silence(100))


async def audio_arrived(live_emulator: Any, seconds: float, timeout: float = 5) -> None:
    """Wait until the emulator's latest connection got ``seconds`` of audio: a burst from
    ``speak()`` goes up at real time (the bridge paces it), so its tail comes later."""
    async with asyncio.timeout(timeout):
        while live_emulator.recorder.last().audio_seconds < seconds - 1e-6:
            await asyncio.sleep(0.02)


from tests.tools.conftest import (  # noqa: E402, F401  (shared fixtures)
    celery_worker_process,
    webhook_receiver,
)


@pytest.fixture
def tools_ready(request, live_settings):
    """Tool rows synced; a real Celery worker when Redis is configured (CI), else the
    embedded in-process mode."""
    from tools.services import tool_sync_registry

    tool_sync_registry()
    if live_settings.REDIS_URL:
        request.getfixturevalue("celery_worker_process")
    else:
        live_settings.TOOL_EXECUTION = "inprocess"
    return live_settings


@pytest.fixture
def two_daphnes(live_emulator: Any, tmp_path: Path) -> Iterator[list[tuple[Any, int]]]:
    """Two Daphne processes of the platform on one database, Redis and emulator: (process,
    port) each. The first one's log is printed at teardown (pytest shows it on failure)."""
    require_postgres()
    env = live_env(live_emulator, require_redis())
    started = [start_daphne(env, tmp_path / f"daphne-{n}.log") for n in range(2)]
    try:
        yield started
    finally:
        stop_processes([proc for proc, _ in started])
        print((tmp_path / "daphne-0.log").read_text()[-3000:])
