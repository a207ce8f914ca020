"""Event-loop lag: how late a periodic sleep wakes on a loop that serves live sessions.

Every session's audio shares its process's event loop, so anything that holds the loop
(a blocking call, a long garbage collection, CPU saturation) delays every call on it. One
small task per loop sleeps ``INTERVAL`` seconds at a time and records how much later than
asked it woke. It starts with the loop's first session and stops with its last, so an
idle loop (and a test's short-lived one) holds no task of ours.
"""

from __future__ import annotations

import asyncio
import collections
import time
import weakref

from voice_platform.observability.prometheus_mode import Gauge, Histogram

INTERVAL = 0.25  # seconds between wake-ups
WINDOW = 20  # the gauge shows the worst of the last WINDOW wake-ups (5 s)

LAG = Gauge(
    "voice_event_loop_lag_seconds",
    "The worst lateness of the event loop's wake-ups over the last 5 s (the worst process's "
    "on this host in multiprocess mode).",
    multiprocess_mode="livemax",
)
LAG_SAMPLES = Histogram(
    "voice_event_loop_wakeup_lag_seconds",
    "How late each periodic wake-up of an event loop serving sessions was.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class _Monitor:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.sessions = 0
        self.task = loop.create_task(self._run(), name="metrics-loop-lag")

    async def _run(self) -> None:
        recent: collections.deque[float] = collections.deque(maxlen=WINDOW)
        while True:
            asked = time.monotonic()
            await asyncio.sleep(INTERVAL)
            lag = max(0.0, time.monotonic() - asked - INTERVAL)
            recent.append(lag)
            LAG_SAMPLES.observe(lag)
            LAG.set(max(recent))


_monitors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Monitor] = (
    weakref.WeakKeyDictionary()
)


def session_opened(loop: asyncio.AbstractEventLoop) -> None:
    """A session is served on ``loop``: watch it (from its first session on)."""
    monitor = _monitors.get(loop)
    if monitor is None or monitor.task.done():
        monitor = _monitors[loop] = _Monitor(loop)
    monitor.sessions += 1


def session_closed(loop: asyncio.AbstractEventLoop) -> None:
    """A session on ``loop`` is over; the last one stops the watch."""
    monitor = _monitors.get(loop)
    if monitor is None:
        return
    monitor.sessions -= 1
    if monitor.sessions <= 0:
        del _monitors[loop]
        monitor.task.cancel()
        # Nothing is measured any more: an idle loop is not a late one.
        LAG.set(0)


def watching(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether a monitor runs on ``loop``."""
    monitor = _monitors.get(loop)
    return monitor is not None and not monitor.task.done()
