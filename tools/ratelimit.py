"""A fixed-window rate limiter: Redis when the cache is Redis, else Django's cache.

It sits on the tool-call admission path, so on Redis one window costs one round trip (a
pipelined ``SET NX EX`` + ``INCR``) instead of the three that Django's cache API needs for
``add`` + ``incr`` (``incr`` checks existence first).
"""

from __future__ import annotations

import functools
import hashlib
import time
import weakref
from typing import Any

from django.conf import settings
from django.core.cache import cache

# Admission waits at most this long for Redis (then the call fails; the model is told).
REDIS_TIMEOUT_SECONDS = 2.0


def rate_limit_key(scope: str, period: int, now: float) -> str:
    """The Redis key of ``scope``'s window at ``now`` (the cache's key prefix included)."""
    window = int(now // period)
    # Hashed: end-user ids are client-supplied strings, not safe cache-key material.
    digest = hashlib.sha256(scope.encode()).hexdigest()[:32]
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    return f"{prefix}:tools:rl:{digest}:{period}:{window}"


@functools.cache
def _redis_client(location: str) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # Bounded, and not retried: a command retried after a lost reply would count twice.
    return redis.Redis.from_url(
        location, socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS, retry=Retry(NoBackoff(), 0),
    )  # fmt: skip


def _redis() -> Any | None:
    config = settings.CACHES["default"]
    if config["BACKEND"] != "django.core.cache.backends.redis.RedisCache":
        return None
    location = config["LOCATION"]
    return _redis_client(location if isinstance(location, str) else location[0])


def rate_limit_consume(*, scope: str, limit: int, period: int, now: float | None = None) -> bool:
    """Count one call against ``scope`` and say whether it is within ``limit`` per ``period``.

    Atomic on both backends (Redis INCR; LocMem under its lock), so concurrent admissions
    in several processes never both take the last slot.
    """
    allowed, _ = rate_limit_consume_and_read(scope=scope, limit=limit, period=period, now=now)
    return allowed


def rate_limit_consume_and_read(
    *, scope: str, limit: int, period: int, now: float | None = None, read: str | None = None
) -> tuple[bool, Any]:
    """``rate_limit_consume``, and the value of the cache key ``read`` (an int or None) in
    the same Redis round trip."""
    key = rate_limit_key(scope, period, time.time() if now is None else now)
    client = _redis()
    if client is not None:
        # MULTI/EXEC, still one round trip: the key cannot expire between SET and INCR
        # (an INCR on a vanished key would make one without a TTL).
        pipe = client.pipeline(transaction=True)
        pipe.set(key, 0, ex=period + 1, nx=True)
        pipe.incr(key)
        if read is not None:
            pipe.get(cache.make_key(read))
        replies = pipe.execute()
        raw = replies[2] if read is not None else None
        return int(replies[1]) <= limit, None if raw is None else int(raw)
    value = cache.get(read) if read is not None else None
    return _consume_in_cache(key, period) <= limit, value


def _consume_in_cache(key: str, period: int) -> int:
    cache.add(key, 0, timeout=period + 1)
    try:
        return int(cache.incr(key))
    except ValueError:
        # The window expired between add and incr: this call opens the next one.
        cache.add(key, 0, timeout=period + 1)
        return int(cache.incr(key))


def rate_limit_refund(*, scope: str, period: int, now: float | None = None) -> None:
    """Give back one call counted by ``rate_limit_consume`` (it turned out to be a repeat).

    Pass the same ``now`` as the consume, so the refund lands in the same window.
    """
    key = rate_limit_key(scope, period, time.time() if now is None else now)
    client = _redis()
    try:
        if client is not None:
            if client.decr(key) < 0:
                client.delete(key)  # the window had rolled over: leave no stray key
        else:
            cache.decr(key)
    except ValueError:
        pass  # the window is gone: nothing to give back


# The version must still be the one admission decided against, or nothing happens (-1); a
# call already admitted (its marker set) is not counted again (2); the window is then
# counted, and only a call within the limit is pushed (1, else 0). Atomic, and one round
# trip: a stale decision is neither counted nor published, and a retried script (its reply
# lost) finds its own marker instead of counting and pushing twice.
REPEATED = 2
_CONSUME_AND_PUSH = """
local seen = redis.call('GET', KEYS[2])
if (seen or '0') ~= ARGV[3] then
  return -1
end
if not redis.call('SET', KEYS[4], 1, 'NX', 'EX', ARGV[5]) then
  return 2
end
redis.call('SET', KEYS[1], 0, 'EX', ARGV[2], 'NX')
if redis.call('INCR', KEYS[1]) > tonumber(ARGV[1]) then
  return 0
end
redis.call('LPUSH', KEYS[3], ARGV[4])
return 1
"""
_scripts: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


async def rate_limit_consume_and_push(
    *, url: str, scope: str, limit: int, period: int, now: float,
    version_key: str, version: str, queue: str, message: bytes,
    marker_key: str, marker_seconds: int,
) -> int:  # fmt: skip
    """On the event loop, in one Redis round trip: if the cache key ``version_key`` (Django's,
    unprefixed) still holds ``version``, count one call against ``scope`` and, if within
    ``limit`` per ``period``, LPUSH ``message`` onto the list ``queue``, unless the cache key
    ``marker_key`` is set already (then set for ``marker_seconds``).

    1: counted and pushed; 0: over the limit (counted, not pushed); 2 (``REPEATED``): the
    marker was set, nothing else done; -1: the version moved on (nothing done). Redis must be
    one server: the keys live in different hash slots.
    """
    import asyncio

    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    per_loop = _scripts.setdefault(asyncio.get_running_loop(), {})
    script = per_loop.get(url)
    if script is None:
        client = redis.asyncio.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS, retry=Retry(NoBackoff(), 0),
        )  # fmt: skip
        script = per_loop[url] = client.register_script(_CONSUME_AND_PUSH)
    keys = [
        rate_limit_key(scope, period, now), cache.make_key(version_key), queue,
        cache.make_key(marker_key),
    ]  # fmt: skip
    return int(await script(keys=keys, args=[limit, period + 1, version, message, marker_seconds]))
