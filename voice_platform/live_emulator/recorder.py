"""What each session received, so a test can assert on what really reached "Google"."""

from __future__ import annotations

import asyncio
import copy
import itertools
import time
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
    sent_at: list[float] = field(default_factory=list)  # time.monotonic() of each in `sent`
    audio_bytes: int = 0
    # Sum of the squared samples of the input audio heard (PCM16): its energy.
    audio_sum_squares: float = 0.0
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
    # Why and when the connection ended (time.monotonic()). `closed_by` is "client" (a
    # close frame or a TCP abort from the client), "server" (lifetime, session limit,
    # refusals, protocol errors, 1008 not implemented, the emulator stopping) or "fault"
    # (injected: close_after/_at, drops, black holes, refuse_code).
    opened_at: float = field(default_factory=time.monotonic)
    closed_at: float | None = None
    closed_by: str | None = None
    go_away_sent: bool = False
    go_away_time_left: float | None = None  # real seconds, as sent
    black_holed: bool = False
    # Stalls injected (realistic profile or Faults.empty_turns / silent_turns).
    empty_turns_sent: int = 0
    silent_turns: int = 0
    pings_received: int = 0
    pong_delays: list[float] = field(default_factory=list)
    # Input audio dropped unheard for arriving too far ahead of real time.
    audio_discarded_seconds: float = 0.0
    # Streamed inputTranscription pieces, in order (their join is the turn's transcript).
    input_transcript_pieces: list[str] = field(default_factory=list)
    # Extra usageMetadata messages sent during replies (not counting turnComplete's).
    usage_updates: int = 0

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
            self.sent_at.append(time.monotonic())

    @property
    def audio_rms(self) -> float:
        """Root mean square of the input audio heard (PCM16 units)."""
        samples = self.audio_bytes // 2
        return (self.audio_sum_squares / samples) ** 0.5 if samples else 0.0

    def add_pong_delay(self, seconds: float) -> None:
        if len(self.pong_delays) < self.max_messages:
            self.pong_delays.append(seconds)

    def add_transcript_piece(self, piece: str) -> None:
        if len(self.input_transcript_pieces) < self.max_messages:
            self.input_transcript_pieces.append(piece)

    def close(self, code: int | None, reason: str | None, by: str | None = None) -> None:
        """The first close wins: code and reason say why the connection ended first.

        A black hole records `(None, "black hole")`: that stays when the socket finally
        goes (the client leaves, or the dead-peer timeout aborts it).
        """
        if self.close_code is None and self.close_reason != "black hole":
            self.close_code, self.close_reason = code, reason
        if self.closed_by is None:
            self.closed_by = by
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
