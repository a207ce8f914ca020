"""Session resumption handles: each one snapshots the conversation at a turn boundary."""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass, field

from voice_platform.live_emulator.model import Turn


@dataclass
class SessionState:
    """What a handle restores on a new connection."""

    session_id: str
    model: str
    history: list[Turn] = field(default_factory=list)
    # Wall-clock start of the session, so duration limits span resumed connections.
    started_at: float = 0.0


@dataclass
class _Entry:
    state: SessionState
    expires_at: float


class HandleStore:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, _Entry] = {}

    def issue(self, state: SessionState, now: float) -> str:
        self._prune(now)
        handle = secrets.token_urlsafe(32)
        self._entries[handle] = _Entry(copy.deepcopy(state), now + self.ttl)
        return handle

    def lookup(self, handle: str, now: float) -> SessionState | None:
        entry = self._entries.get(handle)
        if entry is None or now >= entry.expires_at:
            return None
        return copy.deepcopy(entry.state)

    def session_ended(self, session_id: str, now: float) -> None:
        """Handles stay valid `ttl` after the session ends, not just after issue."""
        for entry in self._entries.values():
            if entry.state.session_id == session_id:
                entry.expires_at = max(entry.expires_at, now + self.ttl)

    def _prune(self, now: float) -> None:
        for handle in [h for h, e in self._entries.items() if now >= e.expires_at]:
            del self._entries[handle]

    def __len__(self) -> int:
        return len(self._entries)
