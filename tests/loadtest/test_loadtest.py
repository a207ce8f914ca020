"""`manage.py loadtest` against a real platform (Daphne, the emulator, a Celery worker)."""

from __future__ import annotations

import asyncio
import sys

import pytest
from channels.db import database_sync_to_async

from sessions.models import VoiceSession
from tests.loadtest.conftest import METRICS_TOKEN
from tests.processes import ROOT
from tools.models import ToolCallRecord

pytestmark = pytest.mark.django_db(transaction=True)
WARM_UP = "loadtest-warm-up-1"


@database_sync_to_async
def stored(agent):
    # The warm-up call before the measured run is not part of the report.
    sessions = list(VoiceSession.unscoped.filter(agent=agent).exclude(end_user_id=WARM_UP))
    calls = list(ToolCallRecord.unscoped.filter(agent=agent))
    return sessions, calls


async def test_three_callers_report_is_real_and_consistent(platform_with_tools):
    platform = platform_with_tools
    code, report, output = await platform.loadtest(
        "--callers", "3", "--spawn-rate", "10", "--duration", "11",
        "--barge-in-every", "2", "--tool-every", "3", "--pause", "0.5",
        "--metrics-token", METRICS_TOKEN, "--max-error-rate", "0",
    )  # fmt: skip
    print(output)  # the table and the progress lines, shown when the test fails
    assert code == 0, output
    assert report["errors"] == {"total": 0, "rate": 0.0, "max_rate": 0.0, "by_code": {}}
    sessions, turns, latency = report["sessions"], report["turns"], report["latency"]
    assert sessions["attempted"] == sessions["started"] == sessions["completed"] == 3
    assert sessions["peak_concurrent"] == 3
    assert sessions["ended_reasons"] == {"client_closed": 3}
    assert turns["total"] >= turns["answered"] > 0
    for figure in (latency["turn"], latency["session_start"], latency["token_mint"]):
        assert figure["count"] > 0
        assert 0 < figure["p50_ms"] <= figure["p95_ms"] <= figure["p99_ms"] <= figure["max_ms"]
    # Barge-ins: the emulator interrupted its reply for each one.
    assert turns["barge_ins"] > 0
    assert turns["interruptions"] >= turns["barge_ins"]
    # Tool turns: the agent called the tool, and the platform stored every call.
    assert turns["tool_turns"] > 0
    assert turns["tool_calls_finished"] > 0
    assert latency["tool_turn"]["count"] > 0
    server = report["server"]
    assert server["source"] == "metrics"
    assert server["measured"]
    assert server["rss_peak_mib"] >= server["rss_baseline_mib"] > 0
    assert server["cpu_percent_mean"] > 0
    assert report["frames"]["sent"] > 0
    assert report["frames"]["added_latency"]["measured"] is False  # no echo emulator here
    assert report["generator"]["send_lag"]["count"] == report["frames"]["sent"]
    assert report["passed"] is True
    # The table on stdout and the live progress lines.
    assert "sessions attempted/started/completed   3 / 3 / 3" in output
    assert "callers 3 | sessions 3 started" in output
    db_sessions, calls = await stored(platform.agent)
    assert len(db_sessions) == 3
    assert {s.end_user_id for s in db_sessions} == {f"loadtest-{n}-1" for n in (1, 2, 3)}
    assert all(s.end_reason == "client_closed" for s in db_sessions)
    assert len(calls) == turns["tool_calls_finished"]
    assert {(c.tool_name, c.status) for c in calls} == {("get_current_time", "succeeded")}


async def test_bad_api_key_is_reported_by_code_and_fails_the_run(platform):
    platform.api_key = "vpk_000000000000_not-a-real-key"
    code, report, output = await platform.loadtest(
        "--callers", "2", "--spawn-rate", "10", "--duration", "20", "--quiet"
    )
    assert code == 1, output
    assert report["errors"]["by_code"] == {"http_401": 2}  # each caller stops at its 401
    assert report["sessions"]["started"] == 0
    assert report["passed"] is False
    assert "error rate 100.00% is above --max-error-rate" in output
    assert report["elapsed_s"] < 20  # every caller gave up: the run ended early


async def test_a_remote_target_is_refused_without_allow_remote():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", "loadtest", "--target", "http://192.0.2.10:8000",
        "--agent", "1", "--api-key", "vpk_x", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert "refusing http://192.0.2.10:8000: it is not a loopback address" in err.decode()
    assert "--allow-remote" in err.decode()
    assert out == b""
