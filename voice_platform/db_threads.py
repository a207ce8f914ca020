"""Where async code runs its database work: side by side on PostgreSQL, in turn on SQLite.

Channels' ``database_sync_to_async`` runs every call of a process on one thread (asgiref's
thread-sensitive mode). Under a connect storm that thread became the queue: profiled at
100 connects/s (docs/performance.md, "Connect storms"), it spent its time waiting on
PostgreSQL round trips while the event loop idled, and session starts waited seconds for
their turn. With PostgreSQL, whose connection pool lends each thread its own connection,
calls here run on a pool of ``DB_THREADS`` threads instead, so one session's round trips no
longer wait behind another's. They keep Channels' connection hygiene (old connections
closed before and after each call: back to the pool). SQLite has a single writer, so with
SQLite (the embedded default) everything stays on the one thread, as before.

Order is the caller's business: each session's writes are awaited one after the other (its
bridge's database worker), so they still reach the database in order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings

P = ParamSpec("P")
R = TypeVar("R")

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def parallel() -> bool:
    """Whether database calls may run side by side (PostgreSQL with DB_THREADS > 1)."""
    engine = settings.DATABASES["default"]["ENGINE"]
    return "postgresql" in engine and int(settings.DB_THREADS) > 1


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=int(settings.DB_THREADS), thread_name_prefix="db"
            )
        return _executor


def db_async(func: Callable[P, R]) -> Callable[P, Any]:
    """``func`` as an awaitable run on a database thread (see the module docstring)."""
    runner: Callable[P, Any]
    if parallel():
        runner = database_sync_to_async(func, thread_sensitive=False, executor=_pool())
    else:
        runner = database_sync_to_async(func)
    return runner
