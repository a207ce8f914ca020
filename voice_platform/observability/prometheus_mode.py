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
from prometheus_client import Counter, Gauge, Histogram, multiprocess, values

__all__ = ["Counter", "Gauge", "Histogram", "multiprocess_dir"]


def multiprocess_dir() -> str:
    """The directory the server processes of this host share, or "" (this process only)."""
    return str(settings.PROMETHEUS_MULTIPROC_DIR or "")


def _use_multiprocess_dir(path: str) -> None:
    """Multiprocess mode for every metric created from now on, however early the library
    was imported.

    The library chooses where values live once, when ``prometheus_client.values`` is first
    imported, from the environment variable. The setting is read from that same variable,
    so usually the library chose files already; if something imported it before the
    variable was set (a test, a tool), switch to the library's own file-backed value class
    before any metric of ours exists, so no figure of ours stays in one process's memory.
    """
    os.makedirs(path, exist_ok=True)  # a missing directory would fail every metric
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path  # the library reads it again later
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    # A process that stops cleanly takes its live gauges (active sessions, loop lag) out
    # of the sums; metrics_view also clears those of processes that died without this.
    atexit.register(_mark_dead, os.getpid(), path)


def _mark_dead(pid: int, path: str) -> None:
    multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


if multiprocess_dir():
    _use_multiprocess_dir(multiprocess_dir())
