"""Where a Daphne process's memory goes: tracemalloc around any ASGI application. Bench only.

    MEM_PROBE_APP=voice_platform.asgi:application MEM_PROBE_DIR=/tmp/snaps \\
        .venv/bin/daphne -p 8001 bench.mem_probe:application

tracemalloc starts once the wrapped application is imported (``MEM_PROBE_FRAMES`` frames
per trace, default 12; 0: none, RSS only, at full speed). Each SIGUSR1 writes
``snap-<n>.pickle`` (a tracemalloc snapshot) and ``snap-<n>.json`` (VmRSS, the traced total,
the ``gc`` object count, the thread count,
glibc's bytes in use and free) to ``MEM_PROBE_DIR``; ``bench.memory_report`` compares two of them.
``MEM_PROBE_PRELOAD`` names a module imported first (an experiment's patch).
bridge_bench.py wraps its servers this way with ``--tracemalloc DIR`` and signals at the
same two moments it reads RSS. Tracing costs CPU and memory of its own, so figures from a
traced run are for finding where memory goes, never for the RSS or CPU columns.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import json
import os
import signal
import tracemalloc
from pathlib import Path
from typing import Any

_DIR = Path(os.environ.get("MEM_PROBE_DIR", "."))
_count = 0


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _malloc_kib() -> dict[str, int]:
    """glibc's view (mallinfo2, all arenas): bytes handed out, and bytes free but kept
    (fragmentation inside the heap); empty where there is no glibc."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return {}
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return {
        "malloc_used_kib": (info.uordblks + info.hblkhd) // 1024,
        "malloc_free_kib": info.fordblks // 1024,
    }


def dump(tag: str = "") -> Path:
    """Write a snapshot now; returns the pickle's path."""
    global _count  # one process, one sequence of snapshots
    _count += 1
    name = f"snap-{_count}{'-' + tag if tag else ''}"
    path = _DIR / f"{name}.pickle"
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(str(path))
    traced, peak = tracemalloc.get_traced_memory()
    meta = {
        "rss_kib": _rss_kib(),
        "traced": traced,
        "peak": peak,
        "objects": len(gc.get_objects()),
        "threads": len(os.listdir("/proc/self/task")),  # pools that grew count here too
        **_malloc_kib(),
    }
    (_DIR / f"{name}.json").write_text(json.dumps(meta))
    return path


def _on_signal(signum: int, frame: object) -> None:
    dump()


def _load(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr or "application")


signal.signal(signal.SIGUSR1, _on_signal)
if os.environ.get("MEM_PROBE_PRELOAD"):  # an experiment's patch, imported first
    importlib.import_module(os.environ["MEM_PROBE_PRELOAD"])
application = _load(os.environ.get("MEM_PROBE_APP", "voice_platform.asgi:application"))
# Started after the import (tracing the import takes minutes): what the warm-up session
# allocates later is in both snapshots, so the comparison is unaffected.
_frames = int(os.environ.get("MEM_PROBE_FRAMES", "12"))
if _frames > 0:  # 0: RSS and object counts only, at full speed
    tracemalloc.start(_frames)
