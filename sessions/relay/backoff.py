"""Exponential backoff with jitter for upstream reconnects."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """0.5 s, 1 s, 2 s, ... (each +-``jitter``), capped, for at most ``max_tries`` tries."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 8.0
    jitter: float = 0.2
    max_tries: int = 5

    def delay(self, attempt: int) -> float:
        """Delay before try number ``attempt`` (1-based)."""
        raw = min(self.cap, self.base * self.factor ** (attempt - 1))
        # Jitter spreads a fleet's reconnects after a shared upstream outage.
        return max(0.0, raw * (1 + random.uniform(-self.jitter, self.jitter)))  # noqa: S311
