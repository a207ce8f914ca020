"""LiveUpstream against a scripted fake connection (no network): the reconnect policy."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from google.genai import errors, types

from sessions.relay.backoff import Backoff
from sessions.relay.upstream import LiveUpstream, UpstreamSettings, UpstreamState


class FakeSession:
    """Delivers ``turns`` model messages, then fails the way a dropped upstream does."""

    def __init__(self, turns: int, code: int) -> None:
        self.turns = turns
        self.code = code
        self._ws = _FakeWs()

    async def receive(self) -> AsyncIterator[types.LiveServerMessage]:
        for _ in range(self.turns):
            await asyncio.sleep(0)
            yield types.LiveServerMessage(
                server_content=types.LiveServerContent(turn_complete=True)
            )
        raise errors.APIError(self.code, {"error": {"message": "dropped"}})


class _FakeWs:
    transport = None

    async def ping(self) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        future.set_result(0.0)
        return future


class Listener:
    def __init__(self) -> None:
        self.states: list[tuple[UpstreamState, str]] = []

    async def on_upstream_message(self, message: types.LiveServerMessage) -> None:
        return None

    async def on_upstream_audio(self, pcm: bytes) -> None:
        return None

    async def on_upstream_state(self, state: UpstreamState, reason: str) -> None:
        self.states.append((state, reason))


def fast_settings(tries: int = 2) -> UpstreamSettings:
    return UpstreamSettings(
        connect_timeout=1, ping_interval=10,
        backoff=Backoff(base=0.001, cap=0.001, max_tries=tries),
    )  # fmt: skip


async def run_until(listener: Listener, upstream: LiveUpstream, *, readies: int) -> None:
    upstream.start()
    async with asyncio.timeout(5):
        while sum(s is UpstreamState.READY for s, _ in listener.states) < readies:
            if any(s is UpstreamState.FAILED for s, _ in listener.states):
                break
            await asyncio.sleep(0.001)
    await upstream.stop()


async def test_upstream_healthy_drops_never_exhaust_the_retries():
    """Six separate drops, each after real traffic, with max_tries=2: it keeps resuming."""
    listener = Listener()

    @contextlib.asynccontextmanager
    async def connect(handle: str | None) -> AsyncIterator[Any]:
        yield FakeSession(turns=3, code=1011)

    upstream = LiveUpstream(connect=connect, listener=listener, settings=fast_settings(2))
    await run_until(listener, upstream, readies=7)
    assert not any(s is UpstreamState.FAILED for s, _ in listener.states)
    assert upstream.connections >= 7


async def test_upstream_gives_up_after_max_tries_of_dead_connections():
    listener = Listener()

    @contextlib.asynccontextmanager
    async def connect(handle: str | None) -> AsyncIterator[Any]:
        yield FakeSession(turns=0, code=1011)  # accepts, then drops before any message

    upstream = LiveUpstream(connect=connect, listener=listener, settings=fast_settings(2))
    await run_until(listener, upstream, readies=10)
    assert listener.states[-1] == (UpstreamState.FAILED, "upstream_unavailable")
    assert upstream.connections == 3  # the first try and two retries


async def test_upstream_rejection_is_not_retried():
    listener = Listener()

    @contextlib.asynccontextmanager
    async def connect(handle: str | None) -> AsyncIterator[Any]:
        raise errors.APIError(1008, {"error": {"message": "API key not valid."}})
        yield  # pragma: no cover

    upstream = LiveUpstream(connect=connect, listener=listener, settings=fast_settings(5))
    await run_until(listener, upstream, readies=1)
    assert listener.states[-1] == (UpstreamState.FAILED, "upstream_rejected")
    assert upstream.failure is not None
    assert "API key not valid." in upstream.failure.detail
