"""The platform's ASGI application plus one read-only probe, for bench/soak.py only.

    daphne bench.soak_asgi:application

`GET /__soak__/state` answers what only the server process itself can see: its asyncio
tasks (counted by name, or by coroutine when unnamed), its threads and the sessions its
bridges hold. With `SOAK_TRACEMALLOC=1`, `GET /__soak__/memory` answers where Python memory
grew: the first call takes the baseline snapshot, each later one the top allocation sites
by growth since it. Everything else goes to `voice_platform.asgi.application` unchanged. The probe
lives here, not in the product: it exists to be run by the soak and nowhere else.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import tracemalloc
from collections import Counter
from typing import Any

from voice_platform.asgi import application as platform_application

STATE_PATH = "/__soak__/state"
MEMORY_PATH = "/__soak__/memory"
_baseline: list[tracemalloc.Snapshot] = []
if os.environ.get("SOAK_TRACEMALLOC") == "1":
    tracemalloc.start(int(os.environ.get("SOAK_TRACEMALLOC_FRAMES", "4")))
_UNNAMED = re.compile(r"^Task-\d+$")


def _task_kind(task: asyncio.Task[Any]) -> str:
    """A task's name, or its coroutine's qualified name when it was left unnamed
    (asyncio's `Task-<n>` says nothing about what leaked)."""
    name = task.get_name()
    if not _UNNAMED.match(name):
        # Numbered names (per session or per connection) grouped by their stem.
        return re.sub(r"[-_:][0-9a-f-]{6,}$", "", name)
    coro = task.get_coro()
    return getattr(coro, "__qualname__", type(coro).__name__)


def server_state() -> dict[str, Any]:
    from sessions.reaper import held_sessions

    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    return {
        "tasks": len(tasks),
        "task_kinds": dict(Counter(_task_kind(t) for t in tasks)),
        "threads": threading.active_count(),
        "thread_names": dict(Counter(re.sub(r"\d+", "N", t.name) for t in threading.enumerate())),
        "held_sessions": len(held_sessions),
    }


def memory_growth(top: int = 40) -> dict[str, Any]:
    if not tracemalloc.is_tracing():
        return {"tracing": False}
    snap = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    traced, peak = tracemalloc.get_traced_memory()
    if not _baseline:
        _baseline.append(snap)
        return {"tracing": True, "baseline": True, "traced_mib": traced / 2**20}
    stats = snap.compare_to(_baseline[0], "traceback")
    return {
        "tracing": True,
        "traced_mib": traced / 2**20,
        "peak_mib": peak / 2**20,
        "growth_mib": sum(s.size_diff for s in stats) / 2**20,
        "top": [
            {
                "kib": s.size_diff / 1024,
                "count": s.count_diff,
                "where": [f"{f.filename}:{f.lineno}" for f in s.traceback],
            }
            for s in stats[:top]
        ],
    }


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] in (STATE_PATH, MEMORY_PATH):
        probe = server_state if scope["path"] == STATE_PATH else memory_growth
        body = json.dumps(probe()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    await platform_application(scope, receive, send)
