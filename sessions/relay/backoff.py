"""Reconnect pacing: full-jitter backoff and a bounded budget per session.

Full jitter (each wait uniform in ``[0, min(cap, base * factor**n)]``, the AWS
architecture blog's "Exponential Backoff And Jitter") spreads a fleet whose connections
dropped together: 200 sessions cut at once by one upstream incident come back spread over
``base`` seconds instead of in one burst, and each retry spreads them further.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Try ``n`` (0-based) waits uniform in ``[0, min(cap, base * factor**n)]``; an outage
    gives up after ``max_tries`` failed tries in a row."""

    base: float = 1.5
    factor: float = 2.0
    cap: float = 15.0
    max_tries: int = 6

    def delay(self, attempt: int) -> float:
        """Wait before try ``attempt`` of an outage (0 = the first reconnect)."""
        ceiling = min(self.cap, self.base * self.factor ** max(0, attempt))
        return random.uniform(0.0, ceiling)  # noqa: S311 - spreading, not security

    def scaled(self, factor: float) -> Backoff:
        return Backoff(self.base / factor, self.factor, self.cap / factor, self.max_tries)


class ReconnectBudget:
    """At most ``limit`` reconnects in any ``window`` seconds for one session: a service
    that accepts and then drops every connection must not be redialled forever."""

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._times: deque[float] = deque()

    def take(self) -> bool:
        """Spend one reconnect; False when the budget is used up."""
        now = self._clock()
        while self._times and now - self._times[0] >= self.window:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True
