"""Periodic jobs every server process runs from its maintenance loop (``sessions.reaper``).

Apps register jobs at start-up (``AppConfig.ready``); each runs at most once per its
interval per process, in the database thread, and one failing never stops the others.
Jobs must be safe to run in several processes at once (idempotent, or guarded by a
database constraint): every server process runs them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class PeriodicJob:
    name: str
    interval: Callable[[], float]  # seconds; read each round, so settings can change it
    run: Callable[[], object]
    last_run: float | None = None


_jobs: dict[str, PeriodicJob] = {}
_running = threading.Lock()  # one round at a time per process


def register(name: str, interval: Callable[[], float], run: Callable[[], object]) -> None:
    """Add (or replace) the job ``name``."""
    _jobs[name] = PeriodicJob(name, interval, run)


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
        if job.last_run is not None and now - job.last_run < job.interval():
            continue
        job.last_run = now
        try:
            job.run()
        except Exception:  # one job's failure (a database hiccup) must not stop the others
            log.exception("periodic job %s failed", job.name)
        ran.append(job.name)
    return ran
