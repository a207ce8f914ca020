"""Per-turn timing: when the user stopped, when the reply reached us, the client, the ear.

One ``TurnClock`` per live connection. Every figure of a turn is measured from the end of
the user's speech (``speech_end``) on this process's monotonic clock; docs/observability.md
says exactly what each one covers. A finished turn waits a little for the client's
``playback.started`` report (voice-to-voice as the user hears it) before it is stored.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from django.utils import timezone

# Where the end of the user's speech was taken from, best first.
SPEECH_END_SOURCES = ("activity_end", "audio_end", "vad", "text")
# A finished audio turn waits this long for the client's playback report.
PLAYBACK_WAIT_SECONDS = 10.0
# Upper bounds (ms) of the latency histogram a session keeps for usage analytics; the
# last bucket is everything slower.
LATENCY_BUCKETS_MS = (
    100, 150, 200, 250, 300, 350, 400, 500, 600, 700, 800, 900, 1000, 1200, 1500, 2000,
    2500, 3000, 4000, 5000, 7500, 10_000, 15_000, 30_000,
)  # fmt: skip


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


@dataclass
class TurnTiming:
    """One turn's figures, in milliseconds from the end of the user's speech."""

    turn: int
    at: str  # wall clock of the end of the user's speech (ISO 8601)
    speech_end_source: str
    reply_in_ms: float | None = None  # the model's first output reached the platform
    reply_out_ms: float | None = None  # ...and was written to the client's socket
    playback_ms: float | None = None  # the client reported it started playing (voice-to-voice)
    tool_ms: float = 0.0  # time with a tool call of this turn in flight
    reconnect_gap_ms: float = 0.0  # time the upstream was reconnecting during the turn
    audio: bool = False  # the reply had audio (playback reports apply)
    outcome: str = "complete"  # complete | interrupted | unanswered

    @property
    def reply_ms(self) -> float | None:
        """The turn's latency as the user met it: heard when reported, else sent."""
        if self.playback_ms is not None:
            return self.playback_ms
        return self.reply_out_ms

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Open:
    timing: TurnTiming
    speech_end: float
    tools_in_flight: int = 0
    tools_since: float = 0.0
    outage_since: float | None = None


@dataclass
class TurnClock:
    """Times the turns of one connection; finished turns go to ``on_finished``."""

    on_finished: Callable[[TurnTiming], None]
    first_turn: int = 1
    clock: Callable[[], float] = time.monotonic
    _open: _Open | None = None
    # Finished, waiting for playback: (timing, its speech end, when it finished).
    _awaiting: tuple[TurnTiming, float, float] | None = None
    _next: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._next = self.first_turn

    @property
    def in_turn(self) -> bool:
        return self._open is not None

    @property
    def awaiting_playback(self) -> bool:
        """A finished turn waits for the client's playback report (see ``tick``)."""
        return self._awaiting is not None

    @property
    def turn_number(self) -> int:
        """The open turn's number (0 when none is open)."""
        return self._open.timing.turn if self._open is not None else 0

    def speech_ended(self, source: str, at: float | None = None) -> None:
        """The user's turn ended (again, if no reply came yet: the latest end counts)."""
        now = self.clock()
        at = now if at is None else min(at, now)
        self._settle_awaiting(now, force=True)
        current = self._open
        if current is not None and current.timing.reply_in_ms is None:
            current.speech_end = at  # more speech before any reply: the newest end counts
            current.timing.speech_end_source = source
            current.timing.at = _wall(at, now)
            return
        if current is not None:
            self._finish(current, "complete", now)
        self._open = _Open(
            TurnTiming(turn=self._next, at=_wall(at, now), speech_end_source=source), at
        )
        self._next += 1

    def reply_in(self, *, audio: bool) -> bool:
        """The model's output reached the platform; True for the turn's first output."""
        current = self._open
        if current is None:
            return False
        if audio:
            current.timing.audio = True
        if current.timing.reply_in_ms is not None:
            return False
        current.timing.reply_in_ms = _ms(self.clock() - current.speech_end)
        return True

    def reply_out(self) -> None:
        """The turn's first output was written to the client."""
        current = self._open
        if current is not None and current.timing.reply_out_ms is None:
            current.timing.reply_out_ms = _ms(self.clock() - current.speech_end)

    def playback_started(self) -> TurnTiming | None:
        """The client started playing the reply: the newest turn sent and not yet heard."""
        now = self.clock()
        for timing, speech_end in self._candidates():
            if timing.reply_out_ms is not None and timing.playback_ms is None:
                timing.playback_ms = _ms(now - speech_end)
                if self._awaiting is not None and self._awaiting[0] is timing:
                    self._awaiting = None
                    self.on_finished(timing)
                return timing
        return None

    def _candidates(self) -> list[tuple[TurnTiming, float]]:
        found = []
        if self._open is not None:
            found.append((self._open.timing, self._open.speech_end))
        if self._awaiting is not None:
            found.append((self._awaiting[0], self._awaiting[1]))
        return found

    def tool_started(self) -> None:
        current = self._open
        if current is None:
            return
        if current.tools_in_flight == 0:
            current.tools_since = self.clock()
        current.tools_in_flight += 1

    def tool_finished(self) -> None:
        current = self._open
        if current is None or current.tools_in_flight == 0:
            return
        current.tools_in_flight -= 1
        if current.tools_in_flight == 0:
            current.timing.tool_ms += _ms(self.clock() - current.tools_since)

    def outage_began(self) -> None:
        current = self._open
        if current is not None and current.outage_since is None:
            current.outage_since = self.clock()

    def outage_ended(self) -> None:
        current = self._open
        if current is not None and current.outage_since is not None:
            current.timing.reconnect_gap_ms += _ms(self.clock() - current.outage_since)
            current.outage_since = None

    def turn_complete(self, *, interrupted: bool = False) -> None:
        current = self._open
        if current is None:
            return
        outcome = "interrupted" if interrupted else "complete"
        if current.timing.reply_in_ms is None and not interrupted:
            outcome = "unanswered"
        self._finish(current, outcome, self.clock())

    def close(self) -> None:
        """The connection ends: every turn it timed is handed over as it is."""
        now = self.clock()
        self._settle_awaiting(now, force=True)
        if self._open is not None:
            outcome = "complete" if self._open.timing.reply_in_ms is not None else "unanswered"
            self._finish(self._open, outcome, now)
            self._settle_awaiting(now, force=True)

    def playback_wait_over(self) -> None:
        """The owner's timer (PLAYBACK_WAIT_SECONDS after the turn finished) ran out: the
        turn waiting for its playback report is handed over without it."""
        self._settle_awaiting(self.clock(), force=True)

    def tick(self) -> None:
        """Hand over a finished turn whose playback report did not come in time."""
        self._settle_awaiting(self.clock(), force=False)

    def _finish(self, current: _Open, outcome: str, now: float) -> None:
        self._open = None
        if current.tools_in_flight:
            current.timing.tool_ms += _ms(now - current.tools_since)
        if current.outage_since is not None:
            current.timing.reconnect_gap_ms += _ms(now - current.outage_since)
        current.timing.outcome = outcome
        timing = current.timing
        self._settle_awaiting(now, force=True)
        if timing.audio and timing.playback_ms is None and timing.reply_out_ms is not None:
            self._awaiting = (timing, current.speech_end, now)
        else:
            self.on_finished(timing)

    def _settle_awaiting(self, now: float, *, force: bool) -> None:
        awaiting = self._awaiting
        if awaiting is not None and (force or now - awaiting[2] >= PLAYBACK_WAIT_SECONDS):
            self._awaiting = None
            self.on_finished(awaiting[0])


def _wall(at: float, now: float) -> str:
    """The wall-clock time of monotonic ``at``."""
    return (timezone.now() - timedelta(seconds=now - at)).isoformat()


def percentile(samples: list[float], pct: float) -> float | None:
    """Nearest-rank percentile; None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])


def histogram_add(histogram: list[int], latency_ms: float) -> list[int]:
    """Count one latency into a ``LATENCY_BUCKETS_MS`` histogram (a new list)."""
    counts = list(histogram) or [0] * (len(LATENCY_BUCKETS_MS) + 1)
    counts += [0] * (len(LATENCY_BUCKETS_MS) + 1 - len(counts))
    index = next(
        (i for i, bound in enumerate(LATENCY_BUCKETS_MS) if latency_ms <= bound),
        len(LATENCY_BUCKETS_MS),
    )
    counts[index] += 1
    return counts


def histogram_merge(histograms: list[list[int]]) -> list[int]:
    merged = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    for histogram in histograms:
        for i, count in enumerate(histogram[: len(merged)]):
            merged[i] += count
    return merged


def histogram_percentile(histogram: list[int], pct: float) -> float | None:
    """The upper bound of the bucket holding the nearest-rank percentile (ms); None when
    empty. The slowest bucket has no bound: its percentile reads as its lower bound."""
    total = sum(histogram)
    if not total:
        return None
    rank = max(1, math.ceil(pct / 100 * total))
    seen = 0
    for i, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return float(LATENCY_BUCKETS_MS[min(i, len(LATENCY_BUCKETS_MS) - 1)])
    return float(LATENCY_BUCKETS_MS[-1])
