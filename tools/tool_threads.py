"""Reused threads for running tools, each call bounded by its timeout.

A tool runs in a thread of its own so that its timeout can be enforced (Python cannot
interrupt a thread, but the caller can stop waiting). Starting a thread per call also meant
a new thread-local Django connection wrapper per call; these threads are kept and reused.
A thread whose tool overruns is simply not waited for: it rejoins the idle set when the tool
finally returns, and meanwhile other calls get other threads.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

_Job = tuple[Callable[[], None], threading.Event]


class ToolThreads:
    def __init__(self, *, max_idle: int = 8) -> None:
        self.max_idle = max_idle
        self._idle: list[queue.SimpleQueue[_Job | None]] = []
        self._lock = threading.Lock()
        self._busy = 0
        self._all_idle = threading.Condition(self._lock)
        self._names = itertools.count(1)

    def run(self, fn: Callable[[], None], timeout: float) -> bool:
        """Run ``fn`` in a pooled thread; True if it returned within ``timeout`` seconds."""
        done = threading.Event()
        with self._lock:
            self._busy += 1
            jobs = self._idle.pop() if self._idle else None
        if jobs is None:
            jobs = queue.SimpleQueue()
            threading.Thread(
                target=self._serve, args=(jobs,), name=f"tool-{next(self._names)}", daemon=True
            ).start()
        jobs.put((fn, done))
        return done.wait(timeout)

    def _serve(self, jobs: queue.SimpleQueue[_Job | None]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            fn, done = job
            try:
                fn()
            except BaseException:  # the thread must outlive any job: its queue is reused
                log.exception("tool thread job failed")
            done.set()
            with self._lock:
                self._busy -= 1
                keep = len(self._idle) < self.max_idle
                if keep:
                    self._idle.append(jobs)
                self._all_idle.notify_all()
            if not keep:
                return

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no tool is running (overrunning ones included); for tests and shutdown."""
        with self._all_idle:
            return self._all_idle.wait_for(lambda: self._busy == 0, timeout)


tool_threads = ToolThreads()
