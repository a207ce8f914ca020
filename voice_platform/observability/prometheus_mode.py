"""prometheus_client in the mode this deployment needs; metric classes come from here.

With ``PROMETHEUS_MULTIPROC_DIR`` set, every server process of a host writes its values to
files in that directory (the library's multiprocess mode) and any process's ``/metrics``
sums them all. Metric modules import ``Counter``, ``Gauge`` and ``Histogram`` from this
module rather than from the library, so the mode is settled before any metric exists.
"""

from __future__ import annotations

import atexit
import os

from django.conf import settings
from prometheus_client import Counter, Gauge, Histogram, multiprocess

__all__ = ["Counter", "Gauge", "Histogram", "multiprocess_dir"]


def multiprocess_dir() -> str:
    """The directory the server processes of this host share, or "" (this process only)."""
    return str(settings.PROMETHEUS_MULTIPROC_DIR or "")


def _use_multiprocess_dir(path: str) -> None:
    """Get the directory ready and take this process out of the live gauges at exit.

    prometheus_client chooses file-backed values from the same environment variable the
    setting is read from, when it is first imported: a server process has it from its
    start, so nothing of the library's internals needs touching here."""
    os.makedirs(path, exist_ok=True)  # a missing directory would fail every metric
    # A process that stops cleanly takes its live gauges (active sessions, loop lag) out
    # of the sums; metrics_view also clears those of processes that died without this.
    atexit.register(_mark_dead, os.getpid(), path)


def _mark_dead(pid: int, path: str) -> None:
    multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


if multiprocess_dir():
    _use_multiprocess_dir(multiprocess_dir())
