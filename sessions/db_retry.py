"""Database writes of a live session that outlive a short PostgreSQL outage.

A conversation never needs the database to go on, but what it records (transcript,
counters, the resumption handle, its end) must not be lost to a failover or a restart of
a few seconds. A write that meets an unreachable database is tried again, in order, with
backoff, until ``LIVE_DB_OUTAGE_GRACE`` seconds have passed since its first try; only then
is it given up (logged). Other errors are not retried: a bad write stays bad.

Django closes a connection that broke when the next ``database_sync_to_async`` call starts
(``close_old_connections``), so each try gets a healthy connection once there is one.

All of a process's database calls share one thread (Channels' thread-sensitive executor),
and during an outage each call blocks it until the pool gives up (``DB_POOL_TIMEOUT``). So
the process probes for the database's return with one write at a time, at most one per
``PROBE_INTERVAL``: the other sessions' writes wait for the probe instead of queueing
their own failures on that thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings

from voice_platform.db_threads import db_async
from voice_platform.outages import outage_of

log = logging.getLogger(__name__)
T = TypeVar("T")
FIRST_DELAY = 0.2
MAX_DELAY = 2.0
PROBE_INTERVAL = 1.0
# Before this moment (monotonic), a write does not try: the database was just found down.
_quiet_until = 0.0


def database_known_down() -> bool:
    """Whether a write found the database unreachable within the last probe interval."""
    return time.monotonic() < _quiet_until


async def db_write_retrying(job: Callable[[], T], *, what: str) -> T:
    """``job()`` on a database thread, tried again while the database is unreachable."""
    global _quiet_until
    deadline = time.monotonic() + float(settings.LIVE_DB_OUTAGE_GRACE)
    delay = FIRST_DELAY
    tries = 0
    while True:
        now = time.monotonic()
        if now < _quiet_until and _quiet_until < deadline:
            await asyncio.sleep(_quiet_until - now)  # another write is probing
            continue
        if tries:
            _quiet_until = now + PROBE_INTERVAL  # this try is the probe: others wait for it
        try:
            result: T = await db_async(job)()
        except Exception as exc:
            if outage_of(exc) != "database" or time.monotonic() + delay > deadline:
                raise
            _quiet_until = max(_quiet_until, time.monotonic() + PROBE_INTERVAL)
            if tries == 0:
                log.warning("%s: the database is unreachable, trying again: %s", what, exc)
            tries += 1
            await asyncio.sleep(delay)
            delay = min(MAX_DELAY, delay * 2)
            continue
        _quiet_until = 0.0
        if tries:
            log.info("%s: written after %d retries", what, tries)
        return result
