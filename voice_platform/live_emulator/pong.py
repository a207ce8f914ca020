"""Slow pongs: Gemini answers WebSocket pings after 8-30 s (aicc2025/sip-to-ai#14).

websockets answers a ping inside its sans-I/O protocol, in `Protocol.recv_frame`, before
the connection sees the frame. `LiveConnection` wraps that one method on its protocol
(checked against websockets 17.4) so that `PongPolicy` can answer later, in order, or not
at all (a black hole). Every other frame goes through untouched.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

from voice_platform.live_emulator.delivery import DelayLine
from voice_platform.live_emulator.recorder import SessionRecord
from voice_platform.live_emulator.rest import BodyAwareConnection


class PongPolicy:
    """How one connection answers pings; counts them in the record."""

    def __init__(
        self,
        record: SessionRecord,
        *,
        delay: tuple[float, float] = (0.0, 0.0),
        rng: random.Random | None = None,
    ) -> None:
        self.record = record
        self.low, self.high = delay  # real seconds (already divided by time_scale)
        self.rng = rng or random.Random()  # noqa: S311 - timing, not security
        self.silent = False
        self.line = DelayLine()

    def on_ping(self, connection: ServerConnection, data: bytes) -> bool:
        """False lets websockets answer now; True means answered later (or never)."""
        self.record.pings_received += 1
        if self.silent:
            return True
        if self.high <= 0:
            self.record.add_pong_delay(0.0)
            return False
        loop = asyncio.get_running_loop()
        received = loop.time()

        async def answer() -> None:
            await connection.pong(data)
            self.record.add_pong_delay(loop.time() - received)

        self.line.schedule(self.rng.uniform(self.low, self.high), answer)
        return True

    def go_dark(self) -> None:
        """A black hole: pending pongs are lost and no ping is answered any more."""
        self.silent = True
        self.line.cancel()

    def close(self) -> None:
        self.line.cancel()


class LiveConnection(BodyAwareConnection):
    """The emulator's server connection: HTTP bodies (rest.py) plus `PongPolicy`."""

    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        super().__init__(protocol, *args, **kwargs)
        # Set by the server once the connection's record exists; None = websockets' way.
        self.pongs: PongPolicy | None = None
        answer_now = protocol.recv_frame

        def recv_frame(frame: Frame) -> None:
            pongs = self.pongs
            if frame.opcode is Opcode.PING and pongs and pongs.on_ping(self, bytes(frame.data)):
                # What recv_frame does with every frame, minus the automatic pong.
                protocol.events.append(frame)
                return
            answer_now(frame)

        # The one interception point: an instance attribute shadows the method.
        protocol.recv_frame = recv_frame  # type: ignore[method-assign]
