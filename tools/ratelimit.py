"""A fixed-window rate limiter on Django's cache (LocMemCache and RedisCache alike)."""

from __future__ import annotations

import hashlib
import time

from django.core.cache import cache


def rate_limit_consume(*, scope: str, limit: int, period: int, now: float | None = None) -> bool:
    """Count one call against ``scope`` and say whether it is within ``limit`` per ``period``.

    ``add`` then ``incr`` is atomic on both backends (Redis INCR; LocMem under its lock), so
    concurrent admissions in several processes never both take the last slot.
    """
    now = time.time() if now is None else now
    window = int(now // period)
    # Hashed: end-user ids are client-supplied strings, not safe cache-key material.
    digest = hashlib.sha256(scope.encode()).hexdigest()[:32]
    key = f"tools:rl:{digest}:{period}:{window}"
    cache.add(key, 0, timeout=period + 1)
    try:
        count = cache.incr(key)
    except ValueError:
        # The window expired between add and incr: this call opens the next one.
        cache.add(key, 0, timeout=period + 1)
        count = cache.incr(key)
    return int(count) <= limit
