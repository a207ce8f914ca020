"""Counters and latency histograms of one load-test run.

Everything runs in one process under gevent (cooperative greenlets), so plain counters
need no locks. Latencies go into a bounded histogram, not a list: 200 callers sending a
frame every 20 ms make 10,000 samples a second, and a long run must not grow without end.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


class Histogram:
    """Milliseconds in buckets of 0.1 ms below 100 ms, 1 ms below 1 s, then 10 ms (so a
    percentile is within 1 % of the true one); count, sum and the exact maximum kept."""

    def __init__(self) -> None:
        self.buckets: Counter[float] = Counter()
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, ms: float) -> None:
        ms = max(0.0, ms)
        step = 0.1 if ms < 100 else 1.0 if ms < 1000 else 10.0
        self.buckets[round(round(ms / step) * step, 1)] += 1
        self.count += 1
        self.total += ms
        self.max = max(self.max, ms)

    def percentile(self, q: float) -> float | None:
        """The smallest bucket value with at least `q` percent of the samples at or under it."""
        if not self.count:
            return None
        rank = max(1, math.ceil(self.count * q / 100))
        seen = 0
        for value in sorted(self.buckets):
            seen += self.buckets[value]
            if seen >= rank:
                return min(value, self.max)
        return self.max

    def summary(self) -> dict[str, Any]:
        """count, p50, p95, p99, max and mean, in ms rounded to 0.1 (None when empty)."""

        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 1)

        return {
            "count": self.count,
            "p50_ms": r(self.percentile(50)),
            "p95_ms": r(self.percentile(95)),
            "p99_ms": r(self.percentile(99)),
            "max_ms": r(self.max) if self.count else None,
            "mean_ms": r(self.total / self.count) if self.count else None,
        }


@dataclass
class ServerSample:
    """One reading of the server: wall time (monotonic s), CPU seconds, RSS bytes, and
    which process it is of (readings of different processes cannot be subtracted)."""

    at: float
    cpu_seconds: float | None
    rss_bytes: int | None
    process: str | None = None


@dataclass
class RunStats:
    callers_spawned: int = 0
    callers_active: int = 0
    callers_killed: int = 0  # still in a call after the grace period: stopped by force
    sessions_attempted: int = 0
    sessions_started: int = 0
    sessions_completed: int = 0
    sessions_open: int = 0
    sessions_open_peak: int = 0
    turns: int = 0
    turns_spoken: int = 0
    turns_answered: int = 0
    barge_ins: int = 0
    interruptions: int = 0
    tool_turns: int = 0
    tool_calls_started: int = 0
    tool_calls_finished: int = 0
    frames_sent: int = 0
    echoes: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    ended_reasons: Counter[str] = field(default_factory=Counter)
    token_mint: Histogram = field(default_factory=Histogram)
    session_start: Histogram = field(default_factory=Histogram)
    turn_latency: Histogram = field(default_factory=Histogram)
    tool_turn_latency: Histogram = field(default_factory=Histogram)
    frame_rtt: Histogram = field(default_factory=Histogram)
    frame_up: Histogram = field(default_factory=Histogram)
    frame_down: Histogram = field(default_factory=Histogram)
    send_lag: Histogram = field(default_factory=Histogram)
    loop_lag: Histogram = field(default_factory=Histogram)
    server: list[ServerSample] = field(default_factory=list)

    def error(self, code: str) -> None:
        self.errors[code] += 1

    def session_opened(self) -> None:
        self.sessions_started += 1
        self.sessions_open += 1
        self.sessions_open_peak = max(self.sessions_open_peak, self.sessions_open)

    def session_closed(self) -> None:
        self.sessions_open -= 1

    def error_rate(self) -> float:
        """Errors per operation: an operation is a session attempt or a turn."""
        operations = self.sessions_attempted + self.turns
        total = sum(self.errors.values())
        if not operations:
            return 1.0 if total else 0.0
        return total / operations
