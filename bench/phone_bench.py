"""Phone calls per server process holding real time, side by side with browser sessions.

    .venv/bin/python -m bench.phone_bench --calls 10,25,50,100,150 --seconds 20

For each count N, one fresh Daphne of the platform (production-like: DEBUG off, PostgreSQL,
Redis, ``PHONE_CARRIER_CLIENT=recording``) takes N simulated phone calls over real
WebSockets (bench/phone_loadgen.py: the signed voice webhook, the TwiML's stream and
credential, 20 ms μ-law frames both ways, marks, clear), then, in another fresh Daphne,
N browser sessions on ``/ws/v1/live`` with the same speech schedule (20 ms PCM16 frames up,
24 kHz audio down). One Live emulator (bench/phone_setup.py) serves the run at pace 1.0
and answers each caller turn by echoing it, so replies stream down at real time.

Daphne is pinned to the first core; the emulator and the load generator share the other.
Per cell: the emulator's seconds of caller audio heard (uplink), the playback of every
reply at the caller (underruns, frame inter-arrival, buffer depth), turn latency, Daphne's
CPU (schedstat, all threads) and RSS, and the machine's load average before and after.
A call holds real time when its replies ran dry in < 1 % of their 20 ms ticks, nothing it
said was lost on the way up and no turn went unanswered.

Needs PostgreSQL and Redis on loopback; the platform runs on its own database
(``voice_platform_bench_phone``, created and migrated if needed).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.bridge_bench import (
    Bench,
    cpu_ns,
    expect,
    fmt,
    install_cell_signals,
    pinned,
    rss_kib,
    stop,
)

ROOT = Path(__file__).resolve().parents[1]
MODES = ("phone", "browser")
UPLINK_TOLERANCE_S = 0.1  # a resampler block and the snapshots' timing
LOST_TOLERANCE_S = 0.15  # the phone's inbound filter holds up to ~115 ms (telephony/audio.py)


class PhoneBench(Bench):
    emulator_stdin: Any = None

    def start_emulator(self) -> None:
        command = [
            sys.executable,
            "-m",
            "bench.phone_setup",
            "emulator",
            "--cert-dir",
            str(self.workdir / "certs"),
        ]
        self.emulator = subprocess.Popen(  # noqa: S603
            command,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=pinned(self.client_cores),
        )
        assert self.emulator.stdout is not None
        self.base_url = expect(self.emulator.stdout, "URL")
        self.cert = expect(self.emulator.stdout, "CERT")

    def emulator_command(self, line: str) -> dict[str, Any]:
        assert self.emulator is not None
        assert self.emulator.stdin is not None
        assert self.emulator.stdout is not None
        self.emulator.stdin.write(line + "\n")
        self.emulator.stdin.flush()
        if line != "STATS":
            return {}
        stats: dict[str, Any] = json.loads(expect(self.emulator.stdout, "STATS"))
        stats["at"] = time.monotonic()
        return stats

    def platform_env(self) -> dict[str, str]:
        return {**super().platform_env(), "PHONE_CARRIER_CLIENT": "recording"}

    def setup(self, tokens: int) -> dict[str, Any]:
        command = [sys.executable, "-m", "bench.phone_setup", "accounts", "--tokens", str(tokens)]
        out = subprocess.run(  # noqa: S603
            command, cwd=ROOT, env=self.platform_env(), check=True, capture_output=True, text=True
        ).stdout
        result: dict[str, Any] = json.loads(out)
        return result

    def run_mode_cell(self, mode: str, calls: int) -> dict[str, Any]:
        args = self.args
        cell: dict[str, Any] = {"mode": mode, "calls": calls, "load_before": os.getloadavg()}
        setup = self.setup(calls + 1 if mode == "browser" else 0)
        with contextlib.ExitStack() as stack:
            server, port = stack.enter_context(self.daphne("platform"))
            self.emulator_command("FORGET")
            command = [
                sys.executable,
                "-m",
                "bench.phone_loadgen",
                "--mode",
                mode,
                "--http-url",
                f"http://127.0.0.1:{port}",
                "--calls",
                str(calls),
                "--seconds",
                str(args.seconds),
                "--warmup",
                str(args.warmup),
                "--speech",
                str(args.speech),
                "--silence",
                str(args.silence),
                "--account",
                setup["account"],
                "--account-sid",
                setup["account_sid"],
                "--auth-token",
                setup["auth_token"],
                "--number",
                setup["number"],
                "--tokens",
                json.dumps(setup["tokens"]),
            ]
            gen = subprocess.Popen(  # noqa: S603
                command,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                preexec_fn=pinned(self.client_cores),
            )
            stack.callback(stop, gen)
            assert gen.stdin is not None
            assert gen.stdout is not None
            expect(gen.stdout, "WARM")
            cell["rss_before_kib"] = rss_kib(server.pid)
            gen.stdin.write("GO\n")
            gen.stdin.flush()
            t0 = float(expect(gen.stdout, "READY"))
            time.sleep(max(0.0, t0 + args.warmup - time.monotonic()))
            clients = [p.pid for p in (self.emulator, gen) if p is not None]
            first = self.emulator_command("STATS")
            if args.profile is not None:  # py-spy over the measured window (it costs CPU)
                profile = args.profile / f"{mode}-{calls}.txt"
                spy = [args.py_spy, "record", "--pid", str(server.pid), "--duration",
                       str(int(args.seconds)), "--rate", "100", "--gil", "--nonblocking",
                       "--format", "raw", "-o", str(profile)]  # fmt: skip
                stack.callback(stop, subprocess.Popen(spy, stdout=subprocess.DEVNULL))  # noqa: S603
            server_start, client_start = cpu_ns(server.pid), [cpu_ns(p) for p in clients]
            wall_start = time.monotonic()
            time.sleep(args.seconds)
            wall = time.monotonic() - wall_start
            cell["server_cpu"] = (cpu_ns(server.pid) - server_start) / 1e9 / wall
            used = [
                (cpu_ns(p) - s) / 1e9 / wall for p, s in zip(clients, client_start, strict=True)
            ]
            cell["emulator_cpu"], cell["gen_cpu"] = used
            cell["client_cpu"] = sum(used)
            cell["rss_after_kib"] = rss_kib(server.pid)
            second = self.emulator_command("STATS")
            sent = float(expect(gen.stdout, "SENT"))
            time.sleep(1.0)  # the last frames on their way up
            last = self.emulator_command("STATS")
            gen.stdin.write("CLOSE\n")
            gen.stdin.flush()
            cell["result"] = json.loads(expect(gen.stdout, "RESULT"))
            gen.wait(30)
        cell["uplink"] = uplink(first, second, last, sent)
        cell["load_after"] = os.getloadavg()
        return cell


def uplink(
    first: dict[str, Any], second: dict[str, Any], last: dict[str, Any], sent: float
) -> dict[str, Any]:
    """Per emulator session: the share of the window's wall time it heard caller audio
    for, and the seconds of what the caller said that never reached it."""
    wall = second["at"] - first["at"]
    a, b, c = first["sessions"], second["sessions"], last["sessions"]
    shares = [(b[k]["audio_s"] - a[k]["audio_s"]) / wall for k in a if k in b]
    lost = [max(0.0, sent - c[k]["audio_s"]) for k in c]
    return {
        "sessions": len(c),
        "min_share": min(shares, default=None),
        "behind": sum(1 for s in shares if s * wall < wall - UPLINK_TOLERANCE_S),
        "max_lost_ms": max(lost, default=0.0) * 1000,
        "lost_calls": sum(1 for v in lost if v > LOST_TOLERANCE_S),
        "discarded_s": sum(v["discarded_s"] for v in c.values()),
        "pace_p99_ms": second["pace_p99_ms"],
    }


def holds(cell: dict[str, Any], *, preroll: bool = False) -> bool:
    """Every call held real time (``preroll``: judged as if the carrier buffered 60 ms
    before playing each reply; the browser path always has its own 100 ms buffer)."""
    r, up = cell.get("result"), cell.get("uplink")
    if not r or not up:
        return False
    underruns = (
        r["calls_underrun_preroll"] if preroll and cell["mode"] == "phone" else r["calls_underrun"]
    )
    return bool(
        r["error_count"] == 0
        and underruns == 0
        and r["unanswered"] == 0
        and r["clears"] == 0
        and up["lost_calls"] == 0
        and up["behind"] == 0
        and up["sessions"] == cell["calls"]
    )


def report(args: argparse.Namespace, cells: dict[tuple[str, int], dict[str, Any]]) -> str:
    rows: list[str] = []
    cost: list[str] = []
    best: dict[tuple[str, bool], int] = {}
    for n in sorted({n for _, n in cells}):
        for mode in MODES:
            cell = cells.get((mode, n))
            if cell is None:
                continue
            r, up = cell.get("result"), cell.get("uplink")
            if not r or not up:
                rows.append(f"| {n} | {mode} | failed | | | | | | | | | |")
                continue
            verdicts = []
            for preroll in (False, True):
                ok = holds(cell, preroll=preroll)
                if not preroll or mode == "phone":
                    verdicts.append("yes" if ok else "**no**")
                smaller = [m for (p, m) in cells if p == mode and m < n]
                if ok and all(holds(cells[(mode, m)], preroll=preroll) for m in smaller):
                    best[(mode, preroll)] = n
            ticks = r["reply_ticks"] or float("nan")
            phone = mode == "phone"
            early = fmt(100 * r["underrun_early"] / ticks, 2) if phone else "-"
            pre = (
                f"{fmt(100 * r['preroll_underrun_ticks'] / ticks, 2)} / "
                f"{r['calls_underrun_preroll']}"
                if phone
                else "(its own 100 ms)"
            )
            rows.append(
                f"| {n} | {mode} | {' / '.join(verdicts)} | "
                f"{fmt(up['min_share'] * 100 if up['min_share'] is not None else None, 1)} / "
                f"{up['lost_calls']} ({fmt(up['max_lost_ms'], 0)} ms) | "
                f"{fmt(100 * r['underrun_ticks'] / ticks, 2)} / {r['calls_underrun']} "
                f"(worst {fmt(100 * r['worst_underrun'], 1)}) | {early} | {pre} | "
                f"{fmt(r['gap_ms50'], 1)} / {fmt(r['gap_ms99'], 1)} / {fmt(r['gap_max_ms'], 0)} | "
                f"{fmt(r['depth50'], 0)} / {fmt(r['depth_max'], 0)} | "
                f"{fmt(r['latency_ms50'], 0)} / {fmt(r['latency_ms95'], 0)} | "
                f"{r['turns']} / {r['unanswered']} / {r['clears']} | "
                f"{r['error_count']} |"
            )
            rss_per = (cell["rss_after_kib"] - cell["rss_before_kib"]) / n
            cost.append(
                f"| {n} | {mode} | {fmt(cell['server_cpu'] * 100, 1)} | "
                f"{fmt(cell['server_cpu'] * 1000 / n, 2)} | "
                f"{fmt(cell['rss_after_kib'] / 1024, 0)} | "
                f"{fmt(rss_per, 0)} | {fmt(cell['client_cpu'] * 100, 0)} "
                f"({fmt(cell['emulator_cpu'] * 100, 0)} + {fmt(cell['gen_cpu'] * 100, 0)}) | "
                f"{fmt(up['pace_p99_ms'], 0)} | "
                f"{fmt(r['lag_ms99'], 1)} / {fmt(r['lag_max_ms'], 1)} | "
                f"{' '.join(f'{v:.2f}' for v in cell['load_before'])} → "
                f"{' '.join(f'{v:.2f}' for v in cell['load_after'])} |"
            )
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("Django", "channels", "daphne", "websockets", "soxr", "twilio")
    )
    return "\n".join(
        [
            f"Run {dt.datetime.now(dt.UTC).isoformat(timespec='minutes')}, {os.cpu_count()} vCPU, "
            f"Python {platform.python_version()}, {versions}. {args.seconds:.0f} s measured per "
            f"cell after {args.warmup:.0f} s; callers speak {args.speech:g} s, then are silent "
            f"{args.silence:g} s. Daphne pinned to core {min(os.sched_getaffinity(0))}; the "
            "emulator and the load generator share the other core.",
            "",
            "| N | Path | Holds real time (as played / 60 ms pre-roll) | Uplink: least heard "
            "% of wall / calls losing audio (max lost) | Underrun % of reply ticks / calls "
            "≥ 1 % (worst call %) | of which in a reply's first 200 ms, % | Underrun % with a "
            "60 ms pre-roll / calls ≥ 1 % | Frame inter-arrival p50 / p99 / max ms | Buffer "
            "depth p50 / max (20 ms frames) | Turn latency p50 / p95 ms | Turns / unanswered / "
            "clears | Errors |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "| N | Path | Daphne CPU % of core 0 | CPU ms per call-second | RSS MiB | RSS KiB "
            "per call | Core-1 CPU % (emulator + load generator) | Emulator reply pacing p99 ms "
            "late | Load generator send lag p99 / max ms | Load average before → after |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *cost,
            "",
            *(
                f"- {mode}{' (60 ms pre-roll)' if preroll else ''}: every call held real time "
                f"up to N = {best.get((mode, preroll), 'none')} (of the counts run)."
                for mode in MODES
                for preroll in ((False, True) if mode == "phone" else (False,))
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", default="10,25,50,100,150", help="comma-separated counts")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--speech", type=float, default=2.0, help="seconds of caller speech")
    parser.add_argument("--silence", type=float, default=3.0, help="seconds of silence after")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/voice_platform_bench_phone"
        ),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--output", type=Path, help="also write the markdown here")
    parser.add_argument("--json", type=Path, help="also write the raw cells here")
    parser.add_argument("--profile", type=Path, help="py-spy Daphne into DIR/<mode>-<N>.txt")
    parser.add_argument("--py-spy", default="py-spy", help="the py-spy binary")
    args = parser.parse_args()
    args.tracemalloc = None  # Bench.daphne's memory probe: not used here
    args.no_compression = False
    counts = [int(n) for n in args.calls.split(",") if n]
    modes = [m for m in args.modes.split(",") if m]
    cells: dict[tuple[str, int], dict[str, Any]] = {}

    install_cell_signals()
    with tempfile.TemporaryDirectory(prefix="phone-bench-") as tmp:
        bench = PhoneBench(args, Path(tmp))
        try:
            bench.start_emulator()
            bench.prepare_database()
            for n in counts:
                for mode in modes:
                    cycle = args.speech + args.silence
                    signal.alarm(int(120 + args.seconds + args.warmup + cycle + n * 0.2))
                    started = time.monotonic()
                    try:
                        cells[(mode, n)] = bench.run_mode_cell(mode, n)
                    except Exception as exc:
                        print(f"{mode} x {n}: failed: {exc}", file=sys.stderr)
                        for log in Path(tmp).glob("daphne-*.log"):
                            print(log.read_text()[-2000:], file=sys.stderr)
                        cells[(mode, n)] = {"mode": mode, "calls": n}
                    finally:
                        signal.alarm(0)
                    print(
                        f"{mode} x {n}: {time.monotonic() - started:.0f} s",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            with contextlib.suppress(Exception):
                bench.emulator_command("STOP")
            stop(bench.emulator)
    table = report(args, cells)
    print(table)
    if args.output:
        args.output.write_text(table + "\n")
    if args.json:
        raw = {f"{mode}-{n}": cell for (mode, n), cell in cells.items()}
        args.json.write_text(json.dumps(raw, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
