"""Late but ordered delivery: network latency, slow pongs and lagging transcripts.

`DelayLine` runs actions after a delay on one task, never out of order: an action is due
no earlier than the one scheduled before it. `Outbox` sends a connection's server
messages through one, so latency and jitter never reorder them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voice_platform.live_emulator import protocol
from voice_platform.live_emulator.recorder import SessionRecord

Action = Callable[[], Awaitable[None]]
logger = logging.getLogger(__name__)


class DelayLine:
    """Actions run one at a time, each at least `delay` after it was scheduled and never
    before the action scheduled ahead of it."""

    def __init__(self) -> None:
        self._queue: deque[tuple[float, Action]] = deque()
        self._more = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_due = 0.0
        self._task: asyncio.Task[None] | None = None
        # Set when an action found the connection closed: nothing more will run.
        self.closed: ConnectionClosed | None = None

    def schedule(self, delay: float, action: Action) -> None:
        loop = asyncio.get_running_loop()
        due = max(loop.time() + max(0.0, delay), self._last_due)
        self._last_due = due
        self._queue.append((due, action))
        self._idle.clear()
        self._more.set()
        if self._task is None:
            self._task = loop.create_task(self._run(), name="live-emulator-delay-line")

    async def drain(self) -> None:
        """Wait until everything scheduled so far has run."""
        await self._idle.wait()

    def cancel(self) -> None:
        """Drop what is pending; later `schedule` calls start afresh."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._queue.clear()
        self._idle.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._idle.set()
                self._more.clear()
                await self._more.wait()
            due, action = self._queue.popleft()
            await _sleep_until(loop, due)
            try:
                await action()
            except ConnectionClosed as exc:
                self.closed = exc
                self._queue.clear()
                self._idle.set()
                return
            except Exception:
                logger.exception("live emulator delayed action failed")


async def _sleep_until(loop: asyncio.AbstractEventLoop, due: float) -> None:
    """Sleep until the loop's clock reads `due`: asyncio may wake a timer up to one clock
    tick early, and a measured delay must never come out shorter than the one asked for."""
    while loop.time() < due:  # noqa: ASYNC110 - a deadline, not a condition to wait on
        await asyncio.sleep(due - loop.time())


class Outbox:
    """Server messages of one connection, sent at once or after latency +/- jitter."""

    def __init__(
        self,
        ws: ServerConnection,
        record: SessionRecord,
        *,
        latency: float = 0.0,
        jitter: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        self.ws = ws
        self.record = record
        self.latency = latency
        self.jitter = jitter
        self.rng = rng or random.Random()  # noqa: S311 - network timing, not security
        self.line = DelayLine()

    @property
    def direct(self) -> bool:
        return self.latency <= 0 and self.jitter <= 0

    async def send(self, message: dict[str, Any]) -> None:
        if self.direct:
            self.record.add_sent(message)
            await self.ws.send(protocol.encode(message), text=False)
            return
        if self.line.closed is not None:
            raise self.line.closed
        delay = self.latency + self.rng.uniform(-self.jitter, self.jitter)

        async def deliver() -> None:
            await self.ws.send(protocol.encode(message), text=False)
            self.record.add_sent(message)

        self.line.schedule(delay, deliver)

    async def drain(self, within: float = 2.0) -> None:
        """Let queued messages leave before a close frame (bounded: the peer may stall)."""
        if not self.direct:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.line.drain(), self.latency + self.jitter + within)

    def discard(self) -> None:
        """Nothing queued leaves any more (a black hole, the end of the connection)."""
        self.line.cancel()
