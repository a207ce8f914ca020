from __future__ import annotations

import threading
import uuid

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
