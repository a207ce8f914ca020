"""Tool round trip: from a ``toolCall`` reaching the bridge's tool gateway to the
``toolResponse`` leaving it, for a no-op tool.

    .venv/bin/python -m bench.tool_bench --calls 1000

Paths, measured in one run against the same PostgreSQL database (``voice_platform_bench``)
and Redis:
- celery: the production path: admission in Django's database thread (idempotency-key
  look-up, validation, the rate limit in Django's cache, the ``queued`` audit row in a
  transaction, ``apply_async`` on commit) -> one worker (solo pool, pinned to core 1) reads
  the row, claims it (``running``) and runs it in a tool thread, writes the result ->
  ``group_send`` wake-up to the session's results group with a copy of the outcome ->
  response;
- in-process: the embedded default (no broker): the same admission, then the same claim,
  run and result in a thread of this process;
- bare celery: the floor under the celery path on this machine: a task that only answers
  over the channel layer (same broker, same worker, no database, no validation);
- direct: the tool function called in this process (the limit).
Calls are sequential (one in flight), so queueing behind other calls is not measured.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DB_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/voice_platform_bench"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = f"live_tools_bench_{uuid.uuid4().hex[:6]}"
TURNS = itertools.count(random.randrange(10**8, 10**9))
ENV = {
    **os.environ,
    "DJANGO_SETTINGS_MODULE": "voice_platform.settings.local",
    "DATABASE_URL": DB_URL,
    "REDIS_URL": REDIS_URL,
    "TOOL_MODULES": "tools.builtin,bench.bench_tools",
    "TOOL_CELERY_QUEUE": QUEUE,
    "LOG_LEVEL": "WARNING",
}


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))]


def start_worker(core: int) -> subprocess.Popen[bytes]:
    command = [
        "taskset", "-c", str(core),
        sys.executable, "-m", "celery", "-A", "voice_platform", "worker", "-Q", QUEUE,
        "-P", "solo", "-l", "warning", "--without-gossip", "--without-mingle",
        "--without-heartbeat", "-n", f"{QUEUE}@%h", "-I", "bench.bench_tasks",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, env=ENV)  # noqa: S603


async def measure(gateway: Any, calls: int, warmup: int) -> list[float]:
    from google.genai import types

    samples: list[float] = []
    for index in range(warmup + calls):
        done = asyncio.Event()
        sent_at: list[float] = []

        async def send(
            responses: list[types.FunctionResponse],
            sent_at: list[float] = sent_at,
            done: asyncio.Event = done,
        ) -> None:
            sent_at.append(time.perf_counter())
            done.set()

        async def emit(event: dict[str, Any]) -> None:
            return None

        call = types.FunctionCall(id=f"b-{uuid.uuid4().hex}", name="bench_noop", args={})
        start = time.perf_counter()
        # A turn of its own: a new request, never a re-ask of an earlier call (the key names
        # the turn).
        await gateway.on_tool_call([call], send, emit, next(TURNS))
        await asyncio.wait_for(done.wait(), 30)
        if index >= warmup:
            samples.append((sent_at[0] - start) * 1000)
    return samples


async def measure_bare(layer: Any, channel: str, calls: int, warmup: int) -> list[float]:
    from bench.bench_tasks import bench_echo

    samples: list[float] = []
    for index in range(warmup + calls):
        start = time.perf_counter()
        bench_echo.apply_async(args=[channel], queue=QUEUE)  # as admission sends (in-loop)
        await asyncio.wait_for(layer.receive(channel), 30)
        if index >= warmup:
            samples.append((time.perf_counter() - start) * 1000)
    return samples


async def run(calls: int, warmup: int) -> dict[str, list[float]]:
    from channels.db import database_sync_to_async
    from channels.layers import get_channel_layer
    from django.conf import settings

    from bench.bench_tools import bench_noop
    from sessions.tool_gateway import ServiceToolGateway
    from tools.calls import tool_allowlist_for_agent, tool_results_group
    from tools.registry import ToolContext
    from voice_platform.tenancy.scope import tenant_scope

    tenant_id, agent, session = await database_sync_to_async(_fixtures)()
    session_id = session.pk
    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel()
    await layer.group_add(tool_results_group(session_id), channel)  # as the consumer does
    results: dict[str, list[float]] = {}
    with tenant_scope(tenant_id):
        allowlist = await database_sync_to_async(tool_allowlist_for_agent)(agent=agent)
        # In-process first: it needs no wake-ups (the outcome is handed over directly).
        for mode in ("inprocess", "celery"):
            settings.TOOL_EXECUTION = mode
            gateway = ServiceToolGateway(session=session, allowlist=allowlist, execution=mode)
            if mode == "inprocess":
                results[mode] = await measure(gateway, calls, warmup)
                continue

            async def wakeups(gw: ServiceToolGateway = gateway) -> None:
                while True:
                    message = await layer.receive(channel)
                    gw.on_result(message)

            # Left running to the end: cancelling a channels-redis receive mid-wait can
            # hang the loop, and the bare phase below receives on a channel of its own.
            pump = asyncio.create_task(wakeups())
            results[mode] = await measure(gateway, calls, warmup)
    bare_channel = await layer.new_channel()
    results["bare-celery"] = await measure_bare(layer, bare_channel, calls, warmup)
    pump.cancel()
    context = ToolContext(
        tenant=None, agent=agent, session_id=session_id, end_user_id="b", call_id="d", policy=None
    )  # type: ignore[arg-type]
    direct = []
    for _ in range(calls):
        start = time.perf_counter()
        bench_noop(context)
        direct.append((time.perf_counter() - start) * 1000)
    results["direct"] = direct
    return results


def _fixtures() -> tuple[int, Any, Any]:
    from agents.models import Agent
    from agents.services import agent_create
    from sessions.models import VoiceSession
    from tools.models import AgentTool
    from tools.services import agent_tool_create, tool_sync_registry
    from voice_platform.tenancy.models import Tenant
    from voice_platform.tenancy.scope import tenant_scope
    from voice_platform.tenancy.services import tenant_create

    tool_sync_registry()
    tenant = Tenant.objects.filter(slug="bench-tools").first() or tenant_create(
        name="Tool bench", slug="bench-tools"
    )
    with tenant_scope(tenant.pk):
        agent = Agent.objects.filter(slug="bench-tools").first() or agent_create(
            tenant=tenant, name="Tool bench", slug="bench-tools",
            model=__import__("django.conf").conf.settings.LIVE_MODELS[0],
            response_modality="TEXT",
        )  # fmt: skip
        if not AgentTool.objects.filter(agent=agent).exists():
            agent_tool_create(tenant=tenant, agent=agent, tool_name="bench_noop")
        session = VoiceSession.objects.create(tenant=tenant, agent=agent, end_user_id="bench")
    return tenant.pk, agent, session


def vacuum_audit_table() -> None:
    """Earlier runs leave dead row versions behind (two updates per call); every run starts
    from a vacuumed table, so runs compare and no autovacuum lands inside one."""
    import psycopg

    with psycopg.connect(DB_URL, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE tools_toolcallrecord")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument(
        "--worker-core", type=int, default=1, help="CPU the Celery worker is pinned to"
    )
    args = parser.parse_args()
    from bench.bridge_setup import ensure_database

    ensure_database(DB_URL)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=ENV,
        check=True,
    )  # fmt: skip
    vacuum_audit_table()
    os.environ.update(ENV)
    os.sched_setaffinity(0, {0})
    import django

    django.setup()
    worker = start_worker(args.worker_core)
    try:
        time.sleep(4)  # the worker connects to the broker
        results = asyncio.run(run(args.calls, args.warmup))
    finally:
        worker.terminate()
        worker.wait(15)
    print(f"Tool round trip, {args.calls} sequential calls ({time.strftime('%Y-%m-%d')}), ms\n")
    print("| path | p50 | p99 | mean | max |")
    print("|---|---|---|---|---|")
    for name in ("celery", "inprocess", "bare-celery", "direct"):
        s = results[name]
        print(
            f"| {name} | {percentile(s, 50):.3f} | {percentile(s, 99):.3f} | "
            f"{statistics.fmean(s):.3f} | {max(s):.3f} |"
        )


if __name__ == "__main__":
    main()
