"""Server CPU and memory from /metrics behind a balancer: readings of different processes
are never subtracted nor compared. A real local /metrics server answers as one process, or
as two in turn (a balancer's round robin)."""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Iterator

import pytest

from loadtest import report
from loadtest.config import LoadConfig
from loadtest.server import MIB, ServerProbe
from loadtest.stats import ServerSample
from tests.loadtest.local_http import Answer, Request, serve

TOKEN = "metrics-secret"


def exposition(cpu: float, rss_mib: float, started: float) -> bytes:
    """What prometheus_client's process collector exposes, for one process."""
    return (
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
        "# TYPE process_cpu_seconds_total counter\n"
        f"process_cpu_seconds_total {cpu}\n"
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\n"
        f"process_resident_memory_bytes {rss_mib * MIB}\n"
        "# HELP process_start_time_seconds Start time of the process since unix epoch.\n"
        "# TYPE process_start_time_seconds gauge\n"
        f"process_start_time_seconds {started}\n"
    ).encode()


@contextlib.contextmanager
def metrics_server(readings: list[bytes]) -> Iterator[str]:
    answers = iter(readings)

    def answer(request: Request) -> Answer:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {}, b""
        return 200, {"Content-Type": "text/plain; version=0.0.4"}, next(answers)

    with serve(answer) as server:
        yield server.url


def config(target: str) -> LoadConfig:
    return LoadConfig.from_json({
        "target": target, "api_key": "vpk_x", "agent_id": 1, "callers": 1, "spawn_rate": 1.0,
        "duration": 1.0, "turns": 0, "utterance": base64.b64encode(bytes(2)).decode(),
        "frame_ms": 100, "pause": 1.0, "barge_in_every": 0, "tool_every": 0,
        "tool_turn_text": "x", "barge_in_after": 0.3, "reply_timeout": 1.0, "echo": False,
        "metrics_token": TOKEN, "server_pids": [], "max_error_rate": 0.01, "quiet": True,
        "seed": 1,
    })  # fmt: skip


def scrape(readings: list[bytes]) -> list[ServerSample]:
    with metrics_server(readings) as url:
        probe = ServerProbe(config(url))
        samples = [probe.sample() for _ in readings]
    assert all(s is not None for s in samples), probe.reason
    return [s for s in samples if s is not None]


A, B = 1_765_000_000.25, 1_765_000_007.5  # two processes' start times


def test_readings_alternating_between_two_processes_are_not_compared():
    # Round robin over two processes: one busy and large, one idle and small.
    samples = scrape([
        exposition(100.0, 300, A), exposition(2.0, 120, B), exposition(100.5, 310, A),
        exposition(2.0, 121, B), exposition(101.0, 305, A), exposition(2.5, 122, B),
    ])  # fmt: skip
    assert [s.process for s in samples] == [f"start {t}" for t in (A, B, A, B, A, B)]
    figures = report._server(samples, peak_sessions=10, reason="")
    assert figures["measured"] is True
    assert figures["processes"] == 2
    assert figures["comparable"] is False
    assert figures["note"] == "mixed processes: not comparable; use --server-pid per process"
    # Nothing across processes, and no readings of one process were consecutive.
    assert figures["cpu_percent_mean"] is None
    assert figures["cpu_percent_peak"] is None
    assert figures["rss_baseline_mib"] is None
    assert figures["rss_end_mib"] is None
    assert figures["memory_per_session_mib"] is None
    assert figures["rss_peak_mib"] == 310.0  # the largest process's own peak
    table = report.table(table_report(figures))
    assert "mixed processes: not comparable; use --server-pid per process" in table
    assert "(2 processes answered)" in table


def test_cpu_rates_are_only_taken_between_readings_of_the_same_process():
    samples = scrape([
        exposition(100.0, 300, A), exposition(100.4, 300, A), exposition(2.0, 120, B),
        exposition(2.1, 120, B), exposition(101.0, 300, A),
    ])  # fmt: skip
    figures = report._server(samples, peak_sessions=10, reason="")
    a, a2, b, b2 = samples[:4]
    assert figures["comparable"] is False
    # The peak rate is one of the two same-process pairs: never a jump between processes.
    same_process = [
        (a2.cpu_seconds - a.cpu_seconds) / (a2.at - a.at) * 100,  # type: ignore[operator]
        (b2.cpu_seconds - b.cpu_seconds) / (b2.at - b.at) * 100,  # type: ignore[operator]
    ]
    assert figures["cpu_percent_peak"] == round(max(same_process), 1)
    assert figures["cpu_percent_peak"] > 0


def test_one_process_gives_every_figure():
    samples = scrape([
        exposition(50.0, 100, A), exposition(50.5, 110, A), exposition(51.0, 104, A),
    ])  # fmt: skip
    figures = report._server(samples, peak_sessions=5, reason="")
    assert (figures["processes"], figures["comparable"]) == (1, True)
    assert "note" not in figures
    assert figures["rss_baseline_mib"] == 100.0
    assert figures["rss_peak_mib"] == 110.0
    assert figures["rss_end_mib"] == 104.0
    assert figures["memory_per_session_mib"] == 2.0  # (110 - 100) MiB / 5 sessions
    assert figures["cpu_percent_mean"] > 0
    assert figures["cpu_percent_peak"] >= figures["cpu_percent_mean"]
    assert re.search(r"^memory per session MiB +2\.0$", report.table(table_report(figures)), re.M)


def test_a_first_reading_without_rss_gives_no_baseline_and_no_per_session_figure():
    samples = [
        ServerSample(at=0.0, cpu_seconds=1.0, rss_bytes=None, process="p"),
        ServerSample(at=1.0, cpu_seconds=1.5, rss_bytes=200 * MIB, process="p"),
    ]
    figures = report._server(samples, peak_sessions=4, reason="")
    assert figures["rss_baseline_mib"] is None
    assert figures["memory_per_session_mib"] is None
    assert figures["rss_peak_mib"] == 200.0
    assert figures["cpu_percent_mean"] == 50.0
    table = report.table(table_report(figures))
    assert re.search(r"^server RSS MiB base/peak/end +- / 200\.0 / 200\.0$", table, re.M)


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"process_cpu_seconds_total 1.0\n", "/metrics has no process_* series"),
     (b"{not prometheus", "/metrics is not Prometheus text")],
)  # fmt: skip
def test_a_scrape_without_a_process_identity_is_no_reading(body, reason):
    with metrics_server([body]) as url:
        probe = ServerProbe(config(url))
        assert probe.sample() is None
    assert probe.reason.startswith(reason)


def table_report(server: dict) -> dict:
    """A minimal report around server figures, for `report.table`."""
    empty = {"count": 0}
    return {
        "target": "http://127.0.0.1:1", "callers_spawned": 1, "elapsed_s": 1.0,
        "sessions": {"attempted": 1, "started": 1, "completed": 1, "peak_concurrent": 1},
        "turns": {"total": 0, "spoken": 0, "answered": 0, "barge_ins": 0, "interruptions": 0,
                  "tool_turns": 0, "tool_calls_finished": 0},
        "latency": {k: empty for k in ("turn", "tool_turn", "session_start", "token_mint")},
        "frames": {"added_latency": {"measured": False, "reason": "-"}},
        "errors": {"total": 0, "rate": 0.0, "by_code": {}, "max_rate": 0.01},
        "server": {"source": "metrics", **server},
        "generator": {"cpu_percent": 1.0, "send_lag": empty, "fell_behind": False},
        "passed": True,
    }  # fmt: skip
