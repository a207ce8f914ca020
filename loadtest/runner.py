"""Run the callers with Locust as a library: an Environment, a local runner, greenlets.

Importing this module imports Locust, which monkey-patches the whole process for gevent:
only the generator's own process (loadtest/generate.py) imports it, never Django's
process nor a test process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import IO, Any

import gevent  # type: ignore[import-untyped]  # ships without type hints
import gevent.event  # type: ignore[import-untyped]  # ships without type hints
import psutil  # type: ignore[import-untyped]  # ships without type hints
from locust.env import Environment

from loadtest import report
from loadtest.caller import HANG_UP_TIMEOUT, Call, Caller, Fatal, Retry
from loadtest.config import LoadConfig
from loadtest.server import MIB, ServerProbe
from loadtest.stats import RunStats

LOOP_TICK = 0.05  # seconds: the generator's own event-loop lag is sampled this often
_stop = gevent.event.Event()


def stop() -> None:
    """End the run early (a signal): callers hang up after their current step."""
    _stop.set()


def run(config: LoadConfig, progress: IO[str]) -> dict[str, Any]:
    """Run the load; the report (report.build)."""
    stats = RunStats()
    probe = ServerProbe(config)
    if config.warm_up:
        _warm_up(config)
    baseline = probe.sample()
    if baseline is not None:
        stats.server.append(baseline)
    me = psutil.Process()
    my_cpu = sum(me.cpu_times()[:2])
    start = time.monotonic()
    deadline = start + config.duration
    caller: type[Caller] = type(
        "LoadCaller", (Caller,), {"config": config, "stats": stats, "deadline": deadline}
    )
    env = Environment(user_classes=[caller])
    runner = env.create_local_runner()
    watchers = [
        gevent.spawn(_loop_lag, stats),
        gevent.spawn(_sample_server, probe, stats),
    ]
    if not config.quiet:
        watchers.append(gevent.spawn(_progress, stats, start, probe, progress))
    runner.start(config.callers, spawn_rate=config.spawn_rate)
    # Until the deadline, or until every caller gave up (a bad key stops them all early).
    while time.monotonic() < deadline and not _stop.wait(0.2):
        if stats.callers_spawned >= config.callers and stats.callers_active == 0:
            break
    if _stop.is_set():
        caller.deadline = time.monotonic()  # read by every caller before each step
    if runner.spawning_greenlet is not None:
        runner.spawning_greenlet.kill()  # a slow ramp may not have finished
    # Callers finish the step they are in (a reply being awaited), then hang up.
    grace = time.monotonic() + config.reply_timeout + HANG_UP_TIMEOUT + 5
    while stats.callers_active > 0 and time.monotonic() < grace:
        gevent.sleep(0.2)
    stats.callers_killed = stats.callers_active
    if stats.callers_killed:
        stats.errors["killed_at_end"] += stats.callers_killed
    runner.quit()
    gevent.killall(watchers)
    final = probe.sample()
    if final is not None:
        stats.server.append(final)
    elapsed = time.monotonic() - start
    cpu = (sum(me.cpu_times()[:2]) - my_cpu) / elapsed * 100
    return report.build(
        config,
        stats,
        elapsed=elapsed,
        server_source=probe.source,
        server_reason=probe.reason,
        generator_cpu_percent=cpu,
    )


def _warm_up(config: LoadConfig) -> None:
    """One short call before the baseline: the server's lazy imports and first-use caches
    must not count as the load's memory. Its figures are discarded."""
    single = dataclasses.replace(config, turns=1, tool_every=0, barge_in_every=0)
    warm = type("WarmUpCaller", (Caller,), {"config": single, "stats": RunStats(),
                                            "deadline": time.monotonic() + 30})  # fmt: skip
    user = warm(Environment(user_classes=[warm]))
    user.label = "warm-up"
    user.on_start()
    user.calls = 1
    with contextlib.suppress(Fatal, Retry):  # the run itself reports what is wrong
        Call(user).run()
    user.on_stop()


def _loop_lag(stats: RunStats) -> None:
    """How late a greenlet wakes up: the generator's own scheduling delay."""
    while True:
        before = time.monotonic()
        gevent.sleep(LOOP_TICK)
        stats.loop_lag.add((time.monotonic() - before - LOOP_TICK) * 1000)


def _sample_server(probe: ServerProbe, stats: RunStats) -> None:
    if probe.source is None:
        return
    while True:
        gevent.sleep(1.0)
        sample = probe.sample()
        if sample is not None:
            stats.server.append(sample)


def _progress(stats: RunStats, start: float, probe: ServerProbe, out: IO[str]) -> None:
    """One line a second: what a person watching the run needs to see."""
    while True:
        gevent.sleep(1.0)
        turn = stats.turn_latency
        p50, p95 = turn.percentile(50), turn.percentile(95)
        lat = f"{p50:.0f}/{p95:.0f} ms" if p50 is not None and p95 is not None else "-"
        server = ""
        if stats.server and probe.source is not None:
            last = stats.server[-1]
            server = f" | server rss {(last.rss_bytes or 0) / MIB:.0f} MiB"
        out.write(
            f"[{time.monotonic() - start:5.0f}s] callers {stats.callers_active}"
            f" | sessions {stats.sessions_started} started, {stats.sessions_open} open"
            f" | turns {stats.turns} (barge-ins {stats.barge_ins}, tools {stats.tool_turns})"
            f" | errors {sum(stats.errors.values())} | turn p50/p95 {lat}"
            f" | send lag p99 {stats.send_lag.percentile(99) or 0:.1f} ms{server}\n"
        )
        out.flush()
