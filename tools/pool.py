"""The tool threads of one process: a bounded pool with a per-tenant share.

``TOOL_THREADS`` threads run tools (in each Celery worker process, or in the server without
a broker). Python cannot stop a thread, so an overrunning tool keeps its thread until it
returns; without a share, one tenant's slow tools (or a flood of its calls waiting for a
thread) could hold every thread and make every other tenant's calls time out. So each
tenant may have at most ``TOOL_THREADS_PER_TENANT`` calls in the pool at once, running or
waiting for a thread; one more is refused at once (``ToolPoolBusy``) and its caller
finishes it as ``failed`` with a reason the model reads, never starting it. The slot is
freed when the call's thread returns, however late: a tenant's overrunning tools count
against its own share, not the others'.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class ToolPoolBusy(Exception):
    """The tenant already has its share of this process's tool threads (the message is
    what the model is told)."""


class ToolPool:
    def __init__(self, *, threads: int, per_tenant: int) -> None:
        self.threads = max(1, threads)
        self.per_tenant = max(1, per_tenant)
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="tool")
        self._lock = threading.Lock()
        self._in_pool: Counter[int] = Counter()

    def submit(
        self, tenant_id: int, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[R]:
        """Run ``fn`` in a tool thread for ``tenant_id``; ``ToolPoolBusy`` if the tenant is
        at its share (nothing was started then)."""
        with self._lock:
            if self._in_pool[tenant_id] >= self.per_tenant:
                raise ToolPoolBusy(
                    f"busy: {self.per_tenant} tool calls of this organisation are already "
                    "running; try again shortly"
                )
            self._in_pool[tenant_id] += 1
        try:
            future = self._executor.submit(fn, *args, **kwargs)
        except BaseException:
            self._release(tenant_id)
            raise
        future.add_done_callback(lambda _done: self._release(tenant_id))
        return future

    def in_pool(self, tenant_id: int) -> int:
        """The tenant's calls in the pool now (running or waiting for a thread)."""
        with self._lock:
            return self._in_pool[tenant_id]

    def shutdown(self, *, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait)

    def _release(self, tenant_id: int) -> None:
        with self._lock:
            self._in_pool[tenant_id] -= 1
            if self._in_pool[tenant_id] <= 0:
                del self._in_pool[tenant_id]
