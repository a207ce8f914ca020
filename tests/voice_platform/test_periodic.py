"""Periodic jobs: each at its interval, one failure never stops the others, one round at a
time per process."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest
from django.core.cache import cache

from voice_platform import periodic


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(periodic, "_jobs", {})
    return []


def test_each_job_runs_at_its_own_interval(jobs):
    periodic.register("fast", lambda: 10, lambda: jobs.append("fast"))
    periodic.register("slow", lambda: 100, lambda: jobs.append("slow"))
    assert periodic.run_due(now=1000) == ["fast", "slow"]
    assert periodic.run_due(now=1005) == []
    assert periodic.run_due(now=1010) == ["fast"]
    assert periodic.run_due(now=1100) == ["fast", "slow"]
    assert jobs == ["fast", "slow", "fast", "fast", "slow"]


def test_a_failing_job_is_logged_and_the_others_run(jobs, caplog):
    def broken() -> None:
        raise RuntimeError("database away")

    periodic.register("broken", lambda: 10, broken)
    periodic.register("fine", lambda: 10, lambda: jobs.append("fine"))
    assert periodic.run_due(now=0) == ["broken", "fine"]
    assert jobs == ["fine"]
    assert "periodic job broken failed" in caplog.text


def test_a_round_still_running_makes_the_next_one_a_no_op(jobs):
    inside, release = threading.Event(), threading.Event()

    def slow() -> None:
        inside.set()
        release.wait(5)

    periodic.register("slow", lambda: 0, slow)
    first = threading.Thread(target=periodic.run_due, kwargs={"now": 0})
    first.start()
    assert inside.wait(5)
    assert periodic.run_due(now=1) == []
    release.set()
    first.join(5)
    assert periodic.run_due(now=2) == ["slow"]


def test_a_shared_job_runs_in_one_process_per_interval(jobs):
    cache.delete("periodic:shared")
    periodic.register("shared", lambda: 60, lambda: jobs.append("shared"), shared=True)
    assert periodic.run_due(now=0) == ["shared"]
    periodic._jobs["shared"].last_run = None  # another process: its own clock, same cache
    assert periodic.run_due(now=0) == []
    cache.delete("periodic:shared")  # the lease expired
    periodic._jobs["shared"].last_run = None
    assert periodic.run_due(now=0) == ["shared"]
    assert jobs == ["shared", "shared"]


async def test_the_loop_runs_only_where_periodic_jobs_are_on(settings):
    loop = asyncio.get_running_loop()
    settings.PERIODIC_JOBS = False  # the test settings' default
    periodic.ensure_running()
    assert loop not in periodic._loops
    settings.PERIODIC_JOBS = True
    periodic.ensure_running()
    task = periodic._loops.pop(loop)
    assert task.get_name() == "periodic-jobs"
    assert not task.done()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
