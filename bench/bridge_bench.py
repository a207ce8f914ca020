"""Live bridge benchmark: per-frame added latency of the platform vs a bare relay vs direct.

    .venv/bin/python -m bench.bridge_bench --sessions 1,50,200 --seconds 15

One emulator (`--echo-frames`, pace 1.0, deflate on like Google) serves the whole run. For
each session count, three paths are measured one after the other with the same load
generator (bench/bridge_loadgen.py):

  direct    SDK client -> emulator (the limit)
  bare      WebSocket client -> Daphne(bench.bare_relay) -> SDK -> emulator
  platform  WebSocket client -> Daphne(voice_platform.asgi, Postgres, Redis) -> emulator

Daphne is pinned to the first core; the emulator and the load generator share the other
(so client-side latency includes contention with the emulator; Daphne's CPU is clean).
Every session sends 3,200-byte frames every 100 ms on a fixed schedule, staggered within one
frame interval. The emulator echoes each frame at once with its receipt time, so the load
generator splits every round trip into client->emulator (up) and emulator->client (down).
Added latency = the path's percentile minus the direct path's at the same session count.

Needs PostgreSQL and Redis on loopback (`--database-url`, `--redis-url`); the platform runs
on its own database (`voice_platform_bench`, created and migrated if needed).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("direct", "bare", "platform")
MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
# Same message caps as scripts/run.sh, for both servers.
DAPHNE_FLAGS = ["--websocket-max-message-size", "65536", "--websocket-max-frame-size", "65536"]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def cpu_ns(pid: int) -> int:
    """On-CPU time of every thread of `pid` (schedstat: ns resolution)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def pinned(cores: set[int]) -> Any:
    def apply() -> None:
        os.sched_setaffinity(0, cores)

    return apply


def stop(proc: subprocess.Popen[Any] | None) -> None:
    """End a process this harness started: SIGTERM, then SIGKILL after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class Cell:
    path: str
    sessions: int
    result: dict[str, Any] = field(default_factory=dict)
    server_cpu: float | None = None  # core 0: Daphne (direct: the SDK client), share of a core
    client_cpu: float = 0.0  # the other core: emulator (+ WebSocket load generator)
    rss_before_kib: int | None = None
    rss_after_kib: int | None = None

    @property
    def ok(self) -> bool:
        return bool(self.result)


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        cores = sorted(os.sched_getaffinity(0))
        self.server_cores = {cores[0]}
        self.client_cores = set(cores[1:] or cores)
        self.env = {
            **os.environ,
            "NO_PROXY": "127.0.0.1,localhost",
            "PYTHONWARNINGS": "ignore",
            "PYTHONUNBUFFERED": "1",
        }
        self.emulator: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.cert = ""
        self.sessions = 0

    # --- processes -------------------------------------------------------------------

    def start_emulator(self) -> None:
        command = [
            sys.executable,
            "-m",
            "voice_platform.live_emulator",
            "--port",
            "0",
            "--cert-dir",
            str(self.workdir / "certs"),
            "--no-record",
            "--echo-frames",
            "--pace",
            "1.0",
            "--connection-lifetime",
            "3600",
            *(["--no-compression"] if self.args.no_compression else []),
        ]
        self.emulator = subprocess.Popen(  # noqa: S603
            command,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=pinned(self.client_cores),
        )
        assert self.emulator.stdout is not None
        self.base_url = self.emulator.stdout.readline().split()[-1]
        self.cert = self.emulator.stdout.readline().split(": ", 1)[1].strip()

    def platform_env(self) -> dict[str, str]:
        return {
            **self.env,
            "DJANGO_SETTINGS_MODULE": "voice_platform.settings.local",
            "DEBUG": "0",
            "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-bridge-" + "x" * 50),
            "LOG_LEVEL": "WARNING",
            "DATABASE_URL": self.args.database_url,
            "REDIS_URL": self.args.redis_url,
            "LIVE_API_BASE_URL": self.base_url,
            "LIVE_API_CA_FILE": self.cert,
            "GEMINI_API_KEY": "bench",
        }

    def prepare_database(self) -> None:
        env = self.platform_env()
        run = [sys.executable, "-m", "bench.bridge_setup", "--create-database"]
        subprocess.run(run, cwd=ROOT, env=env, check=True)  # noqa: S603
        migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
        subprocess.run(migrate, cwd=ROOT, env=env, check=True)  # noqa: S603

    def tokens(self, count: int) -> list[str]:
        command = [sys.executable, "-m", "bench.bridge_setup", "--count", str(count)]
        out = subprocess.run(  # noqa: S603
            command, cwd=ROOT, env=self.platform_env(), check=True, capture_output=True, text=True
        ).stdout
        tokens: list[str] = json.loads(out)["tokens"]
        return tokens

    @contextlib.contextmanager
    def daphne(self, path: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
        port = free_port()
        app = (
            "bench.bare_relay:application" if path == "bare" else "voice_platform.asgi:application"
        )
        probe: dict[str, str] = {}
        if self.args.tracemalloc is not None:  # bench/mem_probe.py wraps the application
            probe = {"MEM_PROBE_APP": app, "MEM_PROBE_DIR": str(self.probe_dir(path))}
            app = "bench.mem_probe:application"
        if path == "bare":
            env = {
                **self.env,
                "DJANGO_SETTINGS_MODULE": "bench.settings_bare_relay",
                "LIVE_API_BASE_URL": self.base_url,
                "LIVE_API_CA_FILE": self.cert,
                "GEMINI_API_KEY": "bench",
                "BARE_RELAY_MODEL": MODEL,
            }
        else:
            env = self.platform_env()
        env.update(probe)
        log = (self.workdir / f"daphne-{path}-{port}.log").open("w")
        command = [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            *DAPHNE_FLAGS,
            app,
        ]
        proc = subprocess.Popen(  # noqa: S603
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            preexec_fn=pinned(self.server_cores),
        )
        try:
            wait_for_port(port, proc)
            yield proc, port
        finally:
            stop(proc)
            log.close()

    def probe_dir(self, path: str) -> Path:
        folder: Path = self.args.tracemalloc / f"{path}-{self.sessions}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def snapshot(self, server: subprocess.Popen[bytes] | None, path: str) -> None:
        """With --tracemalloc: have the server dump a snapshot now, and wait for it."""
        if server is None or self.args.tracemalloc is None:
            return
        folder = self.probe_dir(path)
        before = len(list(folder.glob("snap-*.json")))
        server.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 120
        while len(list(folder.glob("snap-*.json"))) == before and time.monotonic() < deadline:
            time.sleep(0.1)

    # --- one cell --------------------------------------------------------------------

    def run_cell(self, path: str, sessions: int) -> Cell:
        cell = Cell(path, sessions)
        self.sessions = sessions
        with contextlib.ExitStack() as stack:
            server: subprocess.Popen[bytes] | None = None
            extra: list[str] = []
            if path == "direct":
                extra = ["--url", self.base_url, "--cert", self.cert]
            else:
                server, port = stack.enter_context(self.daphne(path))
                if path == "bare":
                    extra = ["--url", f"ws://127.0.0.1:{port}/"]
                else:
                    tokens = self.tokens(sessions + 1)
                    extra = [
                        "--url",
                        f"ws://127.0.0.1:{port}/ws/v1/live",
                        "--tokens",
                        json.dumps(tokens),
                    ]
            command = [
                sys.executable,
                "-m",
                "bench.bridge_loadgen",
                "--path",
                path,
                "--model",
                MODEL,
                "--sessions",
                str(sessions),
                "--seconds",
                str(self.args.seconds),
                "--warmup",
                str(self.args.warmup),
                *extra,
            ]
            gen = subprocess.Popen(  # noqa: S603
                command,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                # Direct: the SDK client does the work Daphne's SDK side does on the other
                # paths, so it gets the server's core; the emulator keeps the other one.
                preexec_fn=pinned(self.server_cores if path == "direct" else self.client_cores),
            )
            stack.callback(stop, gen)
            assert gen.stdin is not None
            assert gen.stdout is not None
            expect(gen.stdout, "WARM")
            if server is not None:
                cell.rss_before_kib = rss_kib(server.pid)
                self.snapshot(server, path)
            gen.stdin.write("GO\n")
            gen.stdin.flush()
            t0 = float(expect(gen.stdout, "READY"))
            time.sleep(max(0.0, t0 + self.args.warmup - time.monotonic()))
            # Core 0 holds Daphne, or on the direct path the SDK client itself.
            core0 = server.pid if server is not None else gen.pid
            pids = [p.pid for p in (self.emulator, gen if server else None) if p is not None]
            client_start = sum(cpu_ns(p) for p in pids)
            server_start = cpu_ns(core0)
            wall_start = time.monotonic()
            time.sleep(self.args.seconds)
            wall = time.monotonic() - wall_start
            cell.server_cpu = (cpu_ns(core0) - server_start) / 1e9 / wall
            if server is not None:
                cell.rss_after_kib = rss_kib(server.pid)
                self.snapshot(server, path)
            cell.client_cpu = (sum(cpu_ns(p) for p in pids) - client_start) / 1e9 / wall
            cell.result = json.loads(expect(gen.stdout, "RESULT"))
            if cell.result["error_count"]:
                print(f"{path} x {sessions}: {cell.result['errors']}", file=sys.stderr)
            gen.wait(30)
        return cell


def expect(stream: TextIO, marker: str) -> str:
    """The rest of the next line starting with `marker` (skipping anything else)."""
    while True:
        line = stream.readline()
        if not line:
            raise RuntimeError(f"load generator ended before {marker}")
        if line.startswith(marker):
            return line[len(marker) :].strip()


# --- report -------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{value:.{digits}f}"


def report(args: argparse.Namespace, cells: dict[tuple[str, int], Cell]) -> str:
    counts = sorted({n for _, n in cells})
    lat_rows: list[str] = []
    res_rows: list[str] = []
    verdicts: list[str] = []
    for n in counts:
        direct = cells.get(("direct", n))
        base: dict[str, float] = {}
        if direct is not None and direct.ok:
            for key in ("up_ms", "down_ms", "connect_ms"):
                for level in (50, 99):
                    base[f"{key}{level}"] = percentile(direct.result[key], level)
        added: dict[str, dict[str, float]] = {}
        for path in PATHS:
            cell = cells.get((path, n))
            if cell is None:
                continue
            if not cell.ok:
                lat_rows.append(f"| {n} | {path} | failed | | | | | | |")
                continue
            r = cell.result
            q = {
                f"{k}{p}": percentile(r[k], p)
                for k in ("up_ms", "down_ms", "connect_ms", "lag_ms")
                for p in (50, 99)
            }
            add = {k: q[k] - base[k] for k in base} if path != "direct" else {}
            added[path] = add
            raw = (
                f"{fmt(q['up_ms50'])} / {fmt(q['up_ms99'])}",
                f"{fmt(q['down_ms50'])} / {fmt(q['down_ms99'])}",
            )
            if path == "direct":
                add_cols = ("(limit)", "(limit)")
            else:
                add_cols = (
                    f"{fmt(add.get('up_ms50'))} / {fmt(add.get('up_ms99'))}",
                    f"{fmt(add.get('down_ms50'))} / {fmt(add.get('down_ms99'))}",
                )
            lat_rows.append(
                f"| {n} | {path} | {raw[0]} | {raw[1]} | {add_cols[0]} | {add_cols[1]} | "
                f"{r['lost']} of {r['measured']} | {r['behind']} "
                f"(max lag {fmt(max(r['lag_ms'], default=float('nan')), 1)} ms) | "
                f"{r['error_count']} |"
            )
            cpu = cell.server_cpu
            per_session_s = cpu * 1000 / n if cpu is not None else None
            rss = None
            if cell.rss_before_kib is not None and cell.rss_after_kib is not None:
                rss = (cell.rss_after_kib - cell.rss_before_kib) / n
            start = "-" if path == "direct" else fmt(add.get("connect_ms50"), 1)
            res_rows.append(
                f"| {n} | {path} | {fmt(cpu * 100 if cpu is not None else None, 1)} | "
                f"{fmt(per_session_s, 2)} | "
                f"{fmt(cell.rss_after_kib / 1024 if cell.rss_after_kib else None, 0)} | "
                f"{fmt(rss, 0)} | {fmt(q['connect_ms50'], 1)} / {fmt(q['connect_ms99'], 1)} | "
                f"{start} | {fmt(cell.client_cpu * 100, 0)} |"
            )
        plat, bare = added.get("platform"), added.get("bare")
        if plat is not None and bare is not None and not (plat and bare):
            verdicts.append(f"- {n} sessions: no data (a path failed; see stderr).")
        elif plat and bare:
            parts = []
            for key, name in (("up_ms99", "up"), ("down_ms99", "down")):
                p, b = plat[key], bare[key]
                ratio = p / b if b > 0 else float("nan")
                met = p <= max(1.2 * b, b + 2.0)
                parts.append(
                    f"{name} p99 added {fmt(p)} vs {fmt(b)} ms "
                    f"(ratio {fmt(ratio)}, diff {p - b:+.2f} ms): {'met' if met else 'MISSED'}"
                )
            plat_cell = cells[("platform", n)]
            realtime = plat_cell.result["behind"] == 0 and plat_cell.result["lost"] == 0
            parts.append(f"real time {'kept' if realtime else 'NOT kept'}")
            verdicts.append(f"- {n} sessions: " + "; ".join(parts) + ".")

    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("Django", "channels", "channels-redis", "daphne", "google-genai", "websockets")
    )
    lines = [
        f"Run {dt.datetime.now(dt.UTC).date().isoformat()}, {os.cpu_count()} vCPU, Python "
        f"{platform.python_version()}, {versions}. {args.seconds:.0f} s measured per cell "
        f"after {args.warmup:.0f} s of warm-up; 3,200-byte frames every 100 ms per session. "
        f"Daphne pinned to core {min(os.sched_getaffinity(0))}; emulator and load generator "
        "share the other core (direct: the SDK client on core 0, the emulator on the other).",
        "",
        "Per-frame latency, ms (p50 / p99). Added = path minus direct at the same count.",
        "",
        "| Sessions | Path | Up (client→emulator) | Down (emulator→client) | Added up | "
        "Added down | Frames lost | Streams behind real time | Errors |",
        "|---|---|---|---|---|---|---|---|---|",
        *lat_rows,
        "",
        "Server cost and session start. Core-0 CPU is Daphne's (direct: the SDK client's), all "
        "threads, from schedstat; RSS/session is "
        "(RSS with all sessions streaming - RSS after one warm-up session) / sessions; start is "
        "connect → `session.started` (direct: `connect()` incl. `setupComplete`), and "
        '"excl. upstream" is its p50 minus the direct p50.',
        "",
        "| Sessions | Path | Core-0 CPU % | CPU ms per session-second | RSS MiB | "
        "RSS KiB/session | Start p50 / p99 ms | Start excl. upstream p50 ms | "
        "Core-1 CPU % (emulator + WS client) |",
        "|---|---|---|---|---|---|---|---|---|",
        *res_rows,
        "",
        "Targets (p99 added latency ≤ 1.2x the bare relay's, or ≤ +2 ms, whichever is larger; "
        "no stream behind real time, no frame lost):",
        "",
        *verdicts,
    ]
    return "\n".join(lines)


def install_cell_signals() -> None:
    """SIGALRM ends a cell that takes too long; SIGTERM unwinds, so the finally blocks
    stop the processes the bench started."""

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError("bench cell took too long")

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", default="1,50,200", help="comma-separated counts")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="streaming before measuring")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument(
        "--no-compression", action="store_true", help="emulator refuses permessage-deflate"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/voice_platform_bench"
        ),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--output", type=Path, help="also write the markdown here")
    parser.add_argument(
        "--tracemalloc",
        type=Path,
        metavar="DIR",
        help="run Daphne under bench/mem_probe.py; snapshots in DIR/<path>-<sessions>/ "
        "(for bench.memory_report; its CPU and RSS figures are not representative)",
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.sessions.split(",") if n]
    paths = [p for p in args.paths.split(",") if p]
    cells: dict[tuple[str, int], Cell] = {}

    install_cell_signals()
    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        try:
            bench.start_emulator()
            if "platform" in paths:
                bench.prepare_database()
            for n in counts:
                for path in paths:
                    signal.alarm(int(120 + args.seconds + args.warmup + n * 0.2))
                    started = time.monotonic()
                    try:
                        cells[(path, n)] = bench.run_cell(path, n)
                    except Exception as exc:
                        print(f"{path} x {n}: failed: {exc}", file=sys.stderr)
                        for log in Path(tmp).glob(f"daphne-{path}-*.log"):
                            print(log.read_text()[-2000:], file=sys.stderr)
                        cells[(path, n)] = Cell(path, n)
                    finally:
                        signal.alarm(0)
                    print(
                        f"{path} x {n}: {time.monotonic() - started:.0f} s",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            stop(bench.emulator)
    table = report(args, cells)
    print(table)
    if args.output:
        args.output.write_text(table + "\n")


if __name__ == "__main__":
    main()
