"""No stampedes: a fleet of upstreams dropped together comes back spread out, and an
upstream that cannot come back gives up within its budget (real SDK, the emulator)."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from typing import Any

from google.genai import types

from sessions.relay.backoff import Backoff
from sessions.relay.upstream import LiveUpstream, UpstreamSettings, UpstreamState

FLEET = 200


class Listener:
    def __init__(self) -> None:
        self.readies = 0
        self.failed = asyncio.Event()
        self.reasons: list[str] = []

    async def on_upstream_message(self, message: types.LiveServerMessage) -> None:
        return None

    async def on_upstream_audio(self, pcm: bytes) -> None:
        return None

    async def on_upstream_state(self, state: UpstreamState, reason: str) -> None:
        if state is UpstreamState.READY:
            self.readies += 1
        elif state is UpstreamState.RECONNECTING:
            self.reasons.append(reason)
        elif state is UpstreamState.FAILED:
            self.failed.set()

    async def on_upstream_stall(self, *, recovering: bool) -> None:
        return None


def fleet(
    emulator: Any, size: int, settings: UpstreamSettings
) -> list[tuple[LiveUpstream, Listener]]:
    client = emulator.make_client()
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.TEXT],
        session_resumption=types.SessionResumptionConfig(),
    )

    def connect(handle: str | None) -> AbstractAsyncContextManager[Any]:
        return client.aio.live.connect(model=emulator.model, config=config)

    members = []
    for _ in range(size):
        listener = Listener()
        members.append(
            (LiveUpstream(connect=connect, listener=listener, settings=settings), listener)
        )
    return members


async def until(predicate: Any, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def stop_all(members: list[tuple[LiveUpstream, Listener]]) -> None:
    await asyncio.gather(*(upstream.stop() for upstream, _ in members))


async def test_two_hundred_upstreams_dropped_together_reconnect_over_more_than_a_second(
    live_emulator: Any, monkeypatch: Any
) -> None:
    # The waits each upstream chose before reconnecting: the spread is judged on these,
    # as the platform decided them. (When the emulator accepted each connection is also
    # checked, loosely: on a loaded machine one stall of the shared event loop bunches the
    # accepts whatever the waits were.)
    waits: list[float] = []
    chosen = Backoff.delay

    def spy(self: Backoff, attempt: int) -> float:
        wait = chosen(self, attempt)
        waits.append(wait)
        return wait

    monkeypatch.setattr(Backoff, "delay", spy)
    members = fleet(live_emulator, FLEET, UpstreamSettings())
    try:
        for upstream, _ in members:
            upstream.start()
        await until(lambda: all(listener.readies == 1 for _, listener in members), 60)
        live_emulator.emulator.abort_connections()
        await until(lambda: all(listener.readies == 2 for _, listener in members), 60)
    finally:
        await stop_all(members)
    again = live_emulator.recorder.sessions[FLEET:]
    assert len(again) == FLEET, "each came back once, none retried"
    opened = sorted(record.opened_at for record in again)
    assert opened[-1] - opened[0] > 1.0
    # One wait per upstream, spread over more than a second, and not a burst then a
    # trickle: no 100 ms holds a sixth of the fleet (uniform waits put about 13 in each).
    assert len(waits) == FLEET
    waits.sort()
    assert waits[-1] - waits[0] > 1.0
    busiest = max(sum(1 for t in waits if start <= t < start + 0.1) for start in waits)
    assert busiest <= FLEET // 6
    assert {reason for _, listener in members for reason in listener.reasons} == {"connection_lost"}


async def test_an_upstream_that_cannot_come_back_gives_up_within_its_tries(
    live_emulator: Any,
) -> None:
    settings = UpstreamSettings().scaled(20)
    members = fleet(live_emulator, 20, settings)
    try:
        for upstream, _ in members:
            upstream.start()
        await until(lambda: all(listener.readies == 1 for _, listener in members), 30)
        await live_emulator.emulator.stop()  # the service is gone for good
        await until(lambda: all(listener.failed.is_set() for _, listener in members), 30)
    finally:
        await stop_all(members)
    for upstream, listener in members:
        assert upstream.failure is not None
        assert upstream.failure.reason == "upstream_unavailable"
        assert 2 <= len(listener.reasons) <= settings.backoff.max_tries + 1
