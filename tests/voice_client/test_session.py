"""LiveSession's reconnect rules against a scripted WebSocket server (no platform needed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.server import ServerConnection, serve

from voice_client import protocol
from voice_client.session import ClientNotice, LiveSession, SessionRefused

Script = Callable[[ServerConnection, int], Awaitable[None]]


def started(resume_token: str) -> str:
    return json.dumps(
        {"type": "session.started", "session_id": "s-1", "resume_token": resume_token,
         "agent": {"id": 1, "name": "A", "response_modality": "TEXT"},
         "audio": {"input_rate": 16000, "output_rate": 24000}}
    )  # fmt: skip


class Scripted:
    """A server that plays ``script`` for each connection and records the request paths."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.script: Script | None = None
        self.port = 0

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        assert self.script is not None
        self.paths.append(ws.request.path)
        await self.script(ws, len(self.paths))


@pytest_asyncio.fixture
async def scripted() -> AsyncIterator[Scripted]:
    server = Scripted()
    async with serve(server.handle, "127.0.0.1", 0) as running:
        server.port = running.sockets[0].getsockname()[1]
        yield server


def session_for(server: Scripted, **options: Any) -> LiveSession:
    return LiveSession(f"ws://127.0.0.1:{server.port}", "ct_first", backoff_base=0.05, **options)


async def test_a_drop_is_resumed_with_the_newest_resume_token_and_a_refused_resume_is_final(
    scripted,
):
    async def script(ws: ServerConnection, n: int) -> None:
        if n == 1:
            await ws.send(started("rt_one"))
            await ws.recv()  # the client's text
            ws.transport.abort()  # a network drop: no close frame
        else:
            await ws.close(4001, "invalid_resume_token")

    scripted.script = script
    session = session_for(scripted)
    await session.start()
    await session.send_text("hello")
    end = await session.wait_end()

    assert scripted.paths == ["/ws/v1/live?token=ct_first", "/ws/v1/live?resume=rt_one"]
    assert (end.code, end.reason, end.refused) == (4001, "invalid_resume_token", True)
    assert end.describe().startswith("refused (4001 invalid token): ")
    assert "[server: invalid_resume_token]" in end.describe()
    notices = [item async for item in session.received() if isinstance(item, ClientNotice)]
    assert [n.kind for n in notices] == ["reconnecting"]


async def test_a_stopping_server_at_the_handshake_is_tried_again_with_the_same_token(scripted):
    async def script(ws: ServerConnection, n: int) -> None:
        if n == 1:
            await ws.close(4012)
            return
        await ws.send(started("rt_two"))
        assert json.loads(await ws.recv())["type"] == "close"
        await ws.close(1000)

    scripted.script = script
    session = session_for(scripted)
    assert (await session.start()).resume_token == "rt_two"
    end = await session.close()
    assert end.ok
    assert scripted.paths == ["/ws/v1/live?token=ct_first"] * 2


async def test_a_refusal_before_the_start_raises_with_the_code(scripted):
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.close(4029)

    scripted.script = script
    with pytest.raises(SessionRefused) as refused:
        await session_for(scripted).start()
    assert refused.value.end.code == 4029
    assert str(refused.value) == protocol.describe_close(4029, "", refused=True)


async def test_resumes_stop_after_max_attempts(scripted):
    async def script(ws: ServerConnection, n: int) -> None:
        if n == 1:
            await ws.send(started("rt_one"))
            await asyncio.sleep(0.05)
        ws.transport.abort()

    scripted.script = script
    session = session_for(scripted, max_attempts=2)
    await session.start()
    end = await session.wait_end()
    assert end.code == protocol.NO_CLOSE_FRAME
    assert not end.ok
    assert len(scripted.paths) == 3  # the session, then two resumes that never started


async def test_audio_queued_during_an_outage_is_bounded_oldest_first(scripted):
    received: list[bytes] = []
    outage = asyncio.Event()
    back = asyncio.Event()

    async def script(ws: ServerConnection, n: int) -> None:
        if n == 1:
            await ws.send(started("rt_one"))
            await outage.wait()
            ws.transport.abort()
            return
        await back.wait()
        await ws.send(started("rt_two"))
        async for message in ws:
            if isinstance(message, bytes):
                received.append(message)
            elif json.loads(message)["type"] == "close":
                await ws.close(1000)

    scripted.script = script
    session = session_for(scripted, max_pending_audio_bytes=3200 * 3)
    await session.start()
    outage.set()
    await asyncio.sleep(0.2)  # the drop is seen; the resume waits for `back`
    frames = [bytes([n]) * 3200 for n in range(5)]
    for frame in frames:
        await session.send_audio(frame)
    back.set()
    end = await session.close()
    assert end.ok
    assert received == frames[2:]
    assert session.dropped_audio_frames == 2


async def test_on_frame_sees_every_text_frame_as_sent_before_it_is_parsed(scripted):
    sent = [started("rt_one"), "not json", '{"type":"pong","id":7}']

    async def script(ws: ServerConnection, n: int) -> None:
        for frame in sent:
            await ws.send(frame)
        await ws.send(b"\x00\x00")  # audio: not a text frame
        await ws.close(4011)

    scripted.script = script
    frames: list[str] = []
    session = session_for(scripted, on_frame=frames.append)
    await session.start()
    end = await session.wait_end()
    assert end.code == 4011
    assert frames == sent
    kinds = [type(item).__name__ async for item in session.received()]
    assert kinds == ["SessionStarted", "ClientNotice", "Pong", "bytes"]
