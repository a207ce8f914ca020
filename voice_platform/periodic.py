"""Periodic jobs the server processes run, each in its own task beside the session reaper.

Apps register jobs at start-up (``AppConfig.ready``). Every process runs a loop that, every
``TICK`` seconds, runs the jobs that are due on a thread of its own: a long rollup never
holds the database thread live sessions write through, nor the reaper's heartbeats.

Jobs must be safe to run in several processes at once (idempotent, or guarded by a
database constraint). A job registered ``shared`` runs in one process per interval: the
first to take its lease in the shared cache; without a cache (a Redis outage) every
process runs it, which is still correct, only more work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import connections

log = logging.getLogger(__name__)
TICK = 10.0


@dataclass
class PeriodicJob:
    name: str
    interval: Callable[[], float]  # seconds; read each round, so settings can change it
    run: Callable[[], object]
    shared: bool = False
    last_run: float | None = None


_jobs: dict[str, PeriodicJob] = {}
_running = threading.Lock()  # one round at a time per process
_loops: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


def register(
    name: str, interval: Callable[[], float], run: Callable[[], object], *, shared: bool = False
) -> None:
    """Add (or replace) the job ``name``; ``shared``: one process per interval runs it."""
    _jobs[name] = PeriodicJob(name, interval, run, shared)


def run_due(now: float | None = None) -> list[str]:
    """Run every job whose interval has passed (synchronously); the names of those run.
    A round still running (a slow rollup) makes this one a no-op."""
    if not _running.acquire(blocking=False):
        return []
    try:
        return _run_due(time.monotonic() if now is None else now)
    finally:
        _running.release()


def _run_due(now: float) -> list[str]:
    ran = []
    for job in list(_jobs.values()):
        interval = job.interval()
        if job.last_run is not None and now - job.last_run < interval:
            continue
        job.last_run = now
        if job.shared and not _lease(job.name, interval):
            continue  # another process runs it this interval
        try:
            job.run()
        except Exception:  # one job's failure (a database hiccup) must not stop the others
            log.exception("periodic job %s failed", job.name)
        ran.append(job.name)
    return ran


def _lease(name: str, interval: float) -> bool:
    try:
        return bool(cache.add(f"periodic:{name}", 1, timeout=max(1, int(interval) - 1)))
    except Exception:  # no cache: run it anyway (jobs are safe to run twice)
        return True


def _round() -> None:
    try:
        run_due()
    finally:
        connections.close_all()  # this thread's: the executor's threads come and go


async def _run_forever() -> None:
    while True:
        await asyncio.sleep(TICK)
        with contextlib.suppress(Exception):  # run_due logs each job's own failure
            await database_sync_to_async(_round, thread_sensitive=False)()


def ensure_running() -> None:
    """Start this event loop's periodic task (once per loop; the consumer calls it)."""
    if not settings.PERIODIC_JOBS:
        return
    loop = asyncio.get_running_loop()
    task = _loops.get(loop)
    if task is None or task.done():
        with contextlib.suppress(RuntimeError):
            _loops[loop] = loop.create_task(_run_forever(), name="periodic-jobs")
