"""The soak (`make soak`, bench/soak.py) in its bounded form: 10 users for 24 s against a
real Daphne, the emulator with faults and a Celery worker, then the same leak checks as the
full run (tasks, sockets and descriptors, RSS, final states). About 45 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_postgres, require_redis

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_soak_bounded_run_leaks_nothing_and_ends_everything(tmp_path: Path) -> None:
    require_postgres()
    redis_url = require_redis()
    result_path = tmp_path / "soak.json"
    # Its own database (voice_platform_soak on the same server) and a queue of its own.
    run = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--sessions", "10", "--minutes", "0.4",
         "--vanish-rate", "0", "--redis-url", redis_url, "--workdir", str(tmp_path / "work"),
         "--json", str(result_path)],
        cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert result_path.exists(), run.stderr[-3000:]
    result = json.loads(result_path.read_text())
    failed = [name for name, ok in result["checks"].items() if not ok]
    assert not failed, (failed, run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-3000:]
    assert result["load"]["sessions_opened"] >= 10
    assert result["before"]["tasks"] >= 1, "the probe sees the server's tasks"
    assert result["after"]["fds"].get("upstream", 0) == 0
