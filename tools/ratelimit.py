"""The per-end-user rate limit of tool calls: a fixed window in Django's cache.

One implementation for every cache backend: ``cache.incr`` counts (atomic on Redis, and
under LocMem's lock) and ``cache.add`` opens a window with its expiry (atomic too), so
concurrent admissions in several processes never both take the last slot.

Without the cache (a Redis outage) calls are not counted and are let through, with a
warning: tools keep working, validated and audited, while the limit cannot be kept.
"""

from __future__ import annotations

import hashlib
import logging
import time

from django.core.cache import cache

from voice_platform.outages import outage_of

log = logging.getLogger(__name__)


def rate_limit_key(scope: str, period: int, now: float) -> str:
    """The cache key of ``scope``'s window at ``now``."""
    # Hashed: end-user ids are client-supplied strings, not safe cache-key material.
    digest = hashlib.sha256(scope.encode()).hexdigest()[:32]
    return f"tools:rl:{digest}:{period}:{int(now // period)}"


def rate_limit_consume(*, scope: str, limit: int, period: int, now: float | None = None) -> bool:
    """Count one call against ``scope``; whether it is within ``limit`` per ``period``."""
    key = rate_limit_key(scope, period, time.time() if now is None else now)
    try:
        return _consume(key, limit, period)
    except Exception as exc:
        if outage_of(exc) is None:
            raise
        log.warning("tool call rate not counted: the cache is unreachable: %s", exc)
        return True


def _consume(key: str, limit: int, period: int) -> bool:
    for _ in range(3):
        try:
            return int(cache.incr(key)) <= limit  # the window exists: one count
        except ValueError:
            # The first call of the window opens it; if another admission opened it first
            # (``add`` is atomic), or it expired in between, count again.
            if cache.add(key, 1, timeout=period + 1):
                return limit >= 1
    raise RuntimeError(f"rate limit window {key} could not be counted")
