"""How a connection ends on the service's side: lifetime and goAway, the session limit,
injected faults (by message count or by time) and black holes."""

from __future__ import annotations

import asyncio
import contextlib
import math

from voice_platform.live_emulator import protocol
from voice_platform.live_emulator.session_base import SessionBase, quietly

# Name of the tasks that run `close_at` / `drop_at` / `black_hole_at`.
TIMED_FAULT_TASK = "live-emulator-timed-fault"


class ConnectionLifecycle(SessionBase):
    def _start_timers(self) -> list[asyncio.Task[None]]:
        """The connection's timers, started right after `setupComplete`."""
        tasks = [asyncio.create_task(quietly(self._lifetime_timer()))]
        if self.compression is None:
            tasks.append(asyncio.create_task(quietly(self._session_limit_timer())))
        for kind in ("close_at", "drop_at", "black_hole_at"):
            seconds = getattr(self.faults, kind)
            if seconds is not None and not math.isinf(seconds):
                work = quietly(self._fault_at(kind, self.config.scaled(seconds)))
                tasks.append(asyncio.create_task(work, name=TIMED_FAULT_TASK))
        return tasks

    async def _fault_due(self, count: int) -> bool:
        """Apply a fault triggered by the `count`th client message; True ends the session."""
        faults = self.faults
        if faults.close_after == count:
            await self.close(faults.close_code, faults.close_reason, by="fault")
            return True
        if faults.drop_after == count:
            self._drop("dropped by fault injection")
            return True
        if faults.black_hole_after == count:
            await self._go_dark()
            return True
        return False

    async def _fault_at(self, kind: str, delay: float) -> None:
        await asyncio.sleep(delay)
        if self.ended or self.dark or self.dropped:
            return
        if kind == "close_at":
            await self.close(self.faults.close_code, self.faults.close_reason, by="fault")
        elif kind == "drop_at":
            self._drop(f"dropped by fault injection at {delay:g} s")
        else:
            await self._go_dark()

    async def _go_dark(self) -> None:
        """Stop reading (so pings go unanswered too) and writing, but keep the socket open,
        until the server's dead-peer timeout (if any) notices and aborts it."""
        self.dark = True
        self._cancel_drop_timers()
        self.record.close(None, "black hole", "fault")
        self.record.black_holed = True
        self.outbox.discard()
        self.pieces.cancel()
        if self.pongs is not None:
            self.pongs.go_dark()
        if self.current is not None:
            self.current.cancel()
        keepalive = getattr(self.ws, "keepalive_task", None)
        if isinstance(keepalive, asyncio.Task):
            keepalive.cancel()
        self.ws.transport.pause_reading()
        timeout = self.config.scaled(self.config.dead_peer_timeout)
        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ws.wait_closed(), timeout)
            # The service's keepalive gave up on the peer: the connection ends, silently.
            self.ws.transport.abort()
        await self.ws.wait_closed()

    async def _lifetime_timer(self) -> None:
        lifetime = self.faults.lifetime or self.config.connection_lifetime
        notice = self.faults.go_away_notice
        if notice is None and self.config.go_away_notice_range is not None:
            notice = self.rng.uniform(*self.config.go_away_notice_range)
        if notice is None:
            notice = self.config.go_away_notice
        notice = max(0.0, min(notice, lifetime))
        lifetime, notice = self.config.scaled(lifetime), self.config.scaled(notice)
        await asyncio.sleep(lifetime - notice)
        await self.send(protocol.go_away(notice))
        self.record.go_away_sent = True
        self.record.go_away_time_left = notice
        await asyncio.sleep(notice)
        await self.close(self.config.lifetime_close_code, self.config.lifetime_close_reason)

    async def _session_limit_timer(self) -> None:
        """Without compression a session (across resumptions) ends at the duration limit."""
        while True:
            limit = (
                self.config.session_limit_video
                if self.record.video_frames
                else self.config.session_limit_audio
            )
            remaining = self.state.started_at + self.config.scaled(limit) - self.config.clock()
            if remaining <= 0:
                await self.close(protocol.CLOSE_INTERNAL, protocol.REASON_SESSION_LIMIT)
                return
            await asyncio.sleep(min(remaining, 5.0))
