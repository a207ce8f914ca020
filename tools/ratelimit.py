"""The per-end-user rate limit of tool calls: a fixed window in Django's cache.

One implementation for every cache backend: ``cache.add`` opens the window with its expiry,
``cache.incr`` counts (atomic on Redis, and under LocMem's lock), so concurrent admissions
in several processes never both take the last slot.
"""

from __future__ import annotations

import hashlib
import time

from django.core.cache import cache


def rate_limit_key(scope: str, period: int, now: float) -> str:
    """The cache key of ``scope``'s window at ``now``."""
    # Hashed: end-user ids are client-supplied strings, not safe cache-key material.
    digest = hashlib.sha256(scope.encode()).hexdigest()[:32]
    return f"tools:rl:{digest}:{period}:{int(now // period)}"


def rate_limit_consume(*, scope: str, limit: int, period: int, now: float | None = None) -> bool:
    """Count one call against ``scope``; whether it is within ``limit`` per ``period``."""
    key = rate_limit_key(scope, period, time.time() if now is None else now)
    cache.add(key, 0, timeout=period + 1)
    try:
        count = cache.incr(key)
    except ValueError:
        # The window expired between add and incr: this call opens the next one.
        cache.add(key, 0, timeout=period + 1)
        count = cache.incr(key)
    return int(count) <= limit
