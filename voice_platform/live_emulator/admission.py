"""Which connections the service still counts as open, and the setup refusals that
depend on it or on chance: quota, resume while open, intermittent refusals.

A connection counts as open from its accepted `setup` until the server knows it ended:
at once after a close frame either way or a server-side abort, but `dead_peer_timeout`
later when the client vanished without a close (its TCP aborted), and, for a black hole,
until the server's own dead-peer timeout aborts it (session.py).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from voice_platform.live_emulator import protocol
from voice_platform.live_emulator.config import EmulatorConfig
from voice_platform.live_emulator.recorder import SessionRecord


class SetupRejected(Exception):
    """Close the connection after the client's `setup` with this code and reason."""

    def __init__(self, code: int, reason: str, by: str = "server") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.by = by


@dataclass
class _Lingering:
    session_id: str | None
    until: float


class OpenConnections:
    def __init__(self, *, dead_peer_timeout: float) -> None:
        self.dead_peer_timeout = dead_peer_timeout  # real seconds
        self._live: dict[ServerConnection, SessionRecord] = {}
        self._lingering: list[_Lingering] = []

    def add(self, ws: ServerConnection, record: SessionRecord) -> None:
        self._live[ws] = record

    def release(self, ws: ServerConnection, record: SessionRecord) -> None:
        """The connection's handler is over."""
        if self._live.pop(ws, None) is None:
            return
        if self._vanished(ws, record):
            until = time.monotonic() + self.dead_peer_timeout
            self._lingering.append(_Lingering(record.session_id, until))

    def count(self) -> int:
        return len(self._open_sessions())

    def session_open(self, session_id: str) -> bool:
        return session_id in self._open_sessions()

    def _open_sessions(self) -> list[str | None]:
        now = time.monotonic()
        self._lingering = [entry for entry in self._lingering if entry.until > now]
        sessions = [entry.session_id for entry in self._lingering]
        for ws, record in self._live.items():
            if ws.protocol.state in (State.CONNECTING, State.OPEN) or self._vanished(ws, record):
                sessions.append(record.session_id)
        return sessions

    def _vanished(self, ws: ServerConnection, record: SessionRecord) -> bool:
        """The client left without a close frame, and the server did not end it itself."""
        return (
            self.dead_peer_timeout > 0
            and ws.protocol.state is State.CLOSED
            and ws.protocol.close_rcvd is None
            and record.closed_by in (None, "client")
        )


def check_refusals(
    *,
    config: EmulatorConfig,
    open_connections: OpenConnections,
    resumed_session: str | None,
    rng: random.Random,
) -> None:
    """The realistic refusals that come after an otherwise valid `setup`."""
    if (
        resumed_session is not None
        and config.refuse_resume_while_open
        and open_connections.session_open(resumed_session)
    ):
        # aicc2025/sip-to-ai#14: "close the old socket first, then resume".
        raise SetupRejected(protocol.CLOSE_INTERNAL, protocol.REASON_RESUME_WHILE_OPEN)
    limit = config.max_concurrent_sessions
    over_limit = limit is not None and open_connections.count() >= limit
    if over_limit or (config.quota_refusal_rate > 0 and rng.random() < config.quota_refusal_rate):
        raise SetupRejected(protocol.CLOSE_INTERNAL, protocol.REASON_QUOTA)
