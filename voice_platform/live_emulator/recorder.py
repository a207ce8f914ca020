"""What each session received, so a test can assert on what really reached "Google"."""

from __future__ import annotations

import asyncio
import copy
import itertools
from dataclasses import dataclass, field
from typing import Any

from voice_platform.live_emulator.audio import INPUT_RATE
from voice_platform.live_emulator.faults import Faults


@dataclass
class SessionRecord:
    """One WebSocket connection. Audio payloads are not kept, only their sizes."""

    index: int
    path: str
    headers: dict[str, str]
    faults: Faults
    api_key: str | None = None
    token: str | None = None
    client_setup: dict[str, Any] | None = None  # normalised, as sent
    setup: dict[str, Any] | None = None  # effective, after token locks
    session_id: str | None = None
    resumed: bool = False
    messages: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    audio_bytes: int = 0
    video_frames: int = 0
    texts: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_responses: list[dict[str, Any]] = field(default_factory=list)
    input_transcripts: list[str] = field(default_factory=list)
    handles: list[str] = field(default_factory=list)
    compressions: int = 0
    close_code: int | None = None
    close_reason: str | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    max_messages: int = 10_000

    @property
    def audio_seconds(self) -> float:
        """Seconds of 16 kHz PCM16 audio received."""
        return self.audio_bytes / 2 / INPUT_RATE

    def add_message(self, message: dict[str, Any]) -> None:
        if len(self.messages) < self.max_messages:
            self.messages.append(_strip_payloads(message))

    def add_sent(self, message: dict[str, Any]) -> None:
        if len(self.sent) < self.max_messages:
            self.sent.append(_strip_payloads(message))

    def close(self, code: int | None, reason: str | None) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self.closed.set()


def _strip_payloads(message: dict[str, Any]) -> dict[str, Any]:
    """Replace base64 `data` fields by their decoded size, to keep memory flat."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "data" and isinstance(value, str):
                    out["dataBytes"] = len(value) * 3 // 4
                else:
                    out[key] = walk(value)
            return out
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    stripped: dict[str, Any] = walk(message)
    return stripped


class Recorder:
    def __init__(self, *, enabled: bool = True, max_messages: int = 10_000) -> None:
        self.enabled = enabled
        self.max_messages = max_messages
        self.sessions: list[SessionRecord] = []
        self._counter = itertools.count(1)

    def new(self, *, path: str, headers: dict[str, str], faults: Faults) -> SessionRecord:
        record = SessionRecord(
            index=next(self._counter),
            path=path,
            headers=copy.copy(headers),
            faults=faults,
            max_messages=self.max_messages if self.enabled else 0,
        )
        self.sessions.append(record)
        return record

    def last(self) -> SessionRecord:
        if not self.sessions:
            raise LookupError("no session has connected yet")
        return self.sessions[-1]

    def clear(self) -> None:
        self.sessions.clear()

    async def wait_closed(self, record: SessionRecord, within: float = 5.0) -> SessionRecord:
        await asyncio.wait_for(record.closed.wait(), within)
        return record


class PaceStats:
    """How late reply chunks leave the emulator versus their real-time schedule.

    A 1 ms histogram (capped at 1 s) keeps this O(1) in memory at any load.
    """

    def __init__(self) -> None:
        self.buckets = [0] * 1001
        self.count = 0
        self.max_ms = 0.0

    def observe(self, late_seconds: float) -> None:
        late_ms = max(0.0, late_seconds * 1000)
        self.count += 1
        self.max_ms = max(self.max_ms, late_ms)
        self.buckets[min(1000, int(late_ms))] += 1

    def percentile(self, q: float) -> float:
        """Upper bound in ms of the q-th percentile of lateness."""
        target, seen = q / 100 * self.count, 0
        for ms, n in enumerate(self.buckets):
            seen += n
            if n and seen >= target:
                return float(ms + 1)
        return 0.0

    def summary(self) -> str:
        return (
            f"reply chunks sent: {self.count}, late p50 <= {self.percentile(50):.0f} ms, "
            f"p99 <= {self.percentile(99):.0f} ms, max {self.max_ms:.1f} ms"
        )
