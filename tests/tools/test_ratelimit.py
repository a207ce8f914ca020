from __future__ import annotations

import runpy
import socket
import threading
import time
import uuid
from pathlib import Path

from django.core.cache import cache

import voice_platform.settings.base as base
from tools.ratelimit import rate_limit_consume


def fresh_scope() -> str:
    return f"test:{uuid.uuid4().hex}"  # the cache outlives tests: never share counters


def test_rate_limit_allows_up_to_limit_then_refuses():
    scope = fresh_scope()
    results = [rate_limit_consume(scope=scope, limit=3, period=60, now=1000.0) for _ in range(5)]
    assert results == [True, True, True, False, False]


def test_rate_limit_next_window_starts_fresh():
    scope = fresh_scope()
    assert rate_limit_consume(scope=scope, limit=1, period=60, now=60.0)
    assert not rate_limit_consume(scope=scope, limit=1, period=60, now=119.9)
    assert rate_limit_consume(scope=scope, limit=1, period=60, now=120.0)


def test_rate_limit_scopes_are_independent():
    first, second = fresh_scope(), fresh_scope()
    assert rate_limit_consume(scope=first, limit=1, period=60, now=0.0)
    assert not rate_limit_consume(scope=first, limit=1, period=60, now=0.0)
    assert rate_limit_consume(scope=second, limit=1, period=60, now=0.0)


def test_rate_limit_is_atomic_under_concurrency() -> None:
    scope = fresh_scope()
    results: list[bool] = []
    lock = threading.Lock()

    def hit() -> None:
        allowed = rate_limit_consume(scope=scope, limit=10, period=60, now=5000.0)
        with lock:
            results.append(allowed)

    threads = [threading.Thread(target=hit) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 10
    assert len(results) == 40


def test_a_black_holed_redis_cache_fails_open_within_the_cache_timeout(monkeypatch, settings):
    """A Redis that accepts connections and never answers (a black hole, not a refusal):
    the cache's socket timeouts bound each call, so the rate fails open instead of hanging."""

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)  # the kernel accepts; nobody ever reads or answers
    try:
        monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{hole.getsockname()[1]}/0")
        configured = runpy.run_path(str(Path(base.__file__)))  # the settings as deployed
        settings.CACHES = configured["CACHES"]
        timeout = configured["CACHE_REDIS_TIMEOUT"]
        started = time.monotonic()
        assert rate_limit_consume(scope=fresh_scope(), limit=1, period=60)  # failed open
        elapsed = time.monotonic() - started
        # redis-py's own default is 5 s per read; each round trip now waits at most this.
        pool = cache._cache.get_client(write=True).connection_pool
        assert pool.connection_kwargs["socket_timeout"] == timeout < 5
        assert timeout <= elapsed < 3 * timeout + 1
    finally:
        hole.close()
