"""A real platform for `manage.py loadtest`: Daphne on the test database, the emulator, a
Celery worker for tool calls. The command runs in a subprocess: it starts Locust, whose
import monkey-patches a process for gevent, which the pytest process must never be."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import require_postgres, require_redis
from tests.factories import AgentFactory
from tests.processes import ROOT, live_env, start_daphne, stop_processes
from tests.tools.conftest import celery_worker_process  # noqa: F401  (a fixture)
from tools.services import agent_tool_create, tool_sync_registry
from voice_platform.tenancy.scope import tenant_scope

METRICS_TOKEN = "loadtest-metrics-token"


@dataclass
class Platform:
    url: str
    pid: int
    env: dict[str, str]
    agent: Any
    api_key: str
    tmp_path: Path

    async def loadtest(self, *args: str, timeout: float = 60) -> tuple[int, dict[str, Any], str]:
        """Run `manage.py loadtest` against this platform: (exit code, JSON report, stderr).
        Async so the emulator, which runs in this test's event loop, keeps serving."""
        report = self.tmp_path / "report.json"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "manage.py", "loadtest", "--target", self.url,
            "--agent", str(self.agent.pk), "--json", str(report), *args,
            cwd=ROOT, env={**self.env, "LOADTEST_API_KEY": self.api_key},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        data = json.loads(report.read_text()) if report.exists() else {}
        return proc.returncode, data, out.decode() + err.decode()


@pytest.fixture
def live_emulator_settings() -> dict[str, Any]:
    # Real-time replies: a barge-in needs a reply still playing when the caller talks.
    return {"pace": 1.0}


@contextlib.contextmanager
def running_platform(live_emulator: Any, tenant: Any, api_key: str, tmp_path: Path,
                     **extra_env: str) -> Iterator[Platform]:  # fmt: skip
    """Daphne on the test database and Redis, talking to `live_emulator`; an agent of
    `tenant` allowed to call `get_current_time`."""
    require_postgres()
    tool_sync_registry()
    agent = AgentFactory(tenant=tenant)
    with tenant_scope(tenant.pk):
        agent_tool_create(tenant=tenant, agent=agent, tool_name="get_current_time")
    env = live_env(live_emulator, require_redis(), METRICS_TOKEN=METRICS_TOKEN, **extra_env)
    proc, port = start_daphne(env, tmp_path / "daphne.log")
    try:
        yield Platform(f"http://127.0.0.1:{port}", proc.pid, env, agent, api_key, tmp_path)
    finally:
        stop_processes([proc])
        print((tmp_path / "daphne.log").read_text()[-3000:])


@pytest.fixture
def platform(live_emulator: Any, alice: Any, tmp_path: Path) -> Iterator[Platform]:
    with running_platform(live_emulator, alice.tenant, alice.api_key, tmp_path) as running:
        yield running


@pytest.fixture
def platform_with_tools(request: pytest.FixtureRequest, live_emulator: Any, alice: Any,
                        settings: Any, tmp_path: Path) -> Iterator[Platform]:  # fmt: skip
    """`platform` with a Celery worker of its own for the tool calls."""
    request.getfixturevalue("celery_worker_process")
    with running_platform(
        live_emulator, alice.tenant, alice.api_key, tmp_path,
        TOOL_CELERY_QUEUE=settings.TOOL_CELERY_QUEUE,  # the worker's queue of its own
    ) as running:  # fmt: skip
        yield running
