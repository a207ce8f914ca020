"""Connect storm: session starts at 200 connects/s into one process, beside streaming calls.

    .venv/bin/python -m bench.connect_storm --storm 200 --rate 200 --background 50

After a rolling restart every client of the stopped process reconnects at once. This bench
streams ``--background`` sessions through one Daphne process (3,200-byte frames every 100 ms,
echoed by the emulator: per-frame up/down latency, as in bench/bridge_bench.py), then opens
``--storm`` more sessions at ``--rate`` per second into the same process and times each
start (WebSocket connect → ``session.started``, measured by the client). The same load
generator runs against the bare relay (bench/bare_relay.py) and the platform, one after the
other, with one emulator.

"Excl. upstream" subtracts each session's own upstream handshake (TCP, TLS, WebSocket and
setup reply to the emulator, timed by the server: the platform's ``session started`` log line
carries ``upstream_ms``; the bare relay sends it in its ``session.started`` frame), so what is
left is the server's own share: accepting the socket, the token check and session row, setup.
Daphne is pinned to the first core; the emulator and the load generator share the other.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.bridge_bench import Bench, cpu_ns, expect, fmt, percentile, pinned, rss_kib, stop
from bench.bridge_loadgen import FRAME_S, Stream, WsTransport, drive, open_timed, summarise

ROOT = Path(__file__).resolve().parents[1]


# --- the load generator (a subprocess, on the client core) ---------------------------------


class StormClient:
    """One storm session: connect, wait for ``session.started``, then stay connected idle."""

    def __init__(self, url: str, *, say_close: bool) -> None:
        self.url, self.say_close = url, say_close
        self.ws: Any = None
        self.start_ms: float | None = None
        self.upstream_ms: float | None = None
        self.session_id: str | None = None
        self.error: str | None = None
        self.reader: asyncio.Task[None] | None = None

    async def open(self, delay: float) -> None:
        import websockets

        await asyncio.sleep(delay)
        began = time.monotonic()
        try:
            async with asyncio.timeout(30):
                self.ws = await websockets.connect(
                    self.url, compression=None, ping_interval=None, open_timeout=30
                )
                while True:
                    message = await self.ws.recv()
                    if isinstance(message, str):
                        event = json.loads(message)
                        if event.get("type") == "session.started":
                            break
                        if event.get("type") in {"error", "session.ended"}:
                            raise RuntimeError(event.get("code") or event.get("reason"))
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"[:200]
            return
        self.start_ms = (time.monotonic() - began) * 1000
        self.session_id = event.get("session_id")
        self.upstream_ms = event.get("upstream_ms")  # the bare relay's own report
        self.reader = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        with contextlib.suppress(Exception):
            async for _ in self.ws:
                pass

    async def close(self) -> None:
        if self.ws is None:
            return
        from voice_client.protocol import close_message

        with contextlib.suppress(Exception):
            if self.say_close:
                await self.ws.send(close_message())
                async with asyncio.timeout(5):
                    await self.ws.wait_closed()
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()


async def loadgen(args: argparse.Namespace) -> dict[str, Any]:
    tokens: list[str] = json.loads(args.tokens) if args.tokens else []

    def url(index: int) -> str:
        return f"{args.url}?token={tokens[index]}" if tokens else args.url

    say_close = bool(tokens)
    warm = StormClient(url(0), say_close=say_close)
    await warm.open(0.0)
    await asyncio.sleep(0.3)
    await warm.close()
    print("WARM", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    streams = [Stream() for _ in range(args.background)]
    transports = [WsTransport(url(1 + i), s, say_close=say_close) for i, s in enumerate(streams)]
    await asyncio.gather(
        *(
            open_timed(t, s, i, i * 0.02)
            for i, (t, s) in enumerate(zip(transports, streams, strict=True))
        )
    )
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.5
    storm_at = t0 + args.warmup
    print(f"READY {t0:.6f} {storm_at:.6f}", flush=True)
    window = (t0 + args.warmup, t0 + args.warmup + args.seconds)
    frames = round((args.warmup + args.seconds) / FRAME_S)
    live = [(t, s) for t, s in zip(transports, streams, strict=True) if s.error is None]
    storm = [
        StormClient(url(1 + args.background + i), say_close=say_close) for i in range(args.storm)
    ]

    async def storm_all() -> None:
        await asyncio.sleep(max(0.0, storm_at - loop.time()))
        await asyncio.gather(*(c.open(i / args.rate) for i, c in enumerate(storm)))

    await asyncio.gather(
        storm_all(),
        *(
            drive(t, s, t0, (i % 10) * FRAME_S / 10, frames, window)
            for i, (t, s) in enumerate(live)
        ),
    )
    await asyncio.sleep(1.0)  # echoes still in flight
    for stream in streams:
        stream.lost = sum(1 for in_window in stream.sent.values() if in_window)
    await asyncio.gather(*(t.close() for t in transports), *(c.close() for c in storm))
    return {
        "background": summarise(streams),
        "storm": [
            {"start_ms": c.start_ms, "upstream_ms": c.upstream_ms, "session": c.session_id}
            for c in storm
            if c.error is None
        ],
        "storm_errors": [c.error for c in storm if c.error][:5],
        "storm_error_count": sum(1 for c in storm if c.error),
    }


# --- the orchestrator ----------------------------------------------------------------------


class StormBench(Bench):
    def platform_env(self) -> dict[str, str]:
        # INFO in JSON: each "session started" line carries the session's upstream_ms.
        return {**super().platform_env(), "LOG_LEVEL": "INFO", "LOG_FORMAT": "json"}

    def run_path(self, path: str) -> dict[str, Any]:
        args = self.args
        with self.daphne(path) as (server, port):
            extra = ["--url", f"ws://127.0.0.1:{port}/"]
            if path == "platform":
                tokens = self.tokens(1 + args.background + args.storm)
                live_url = f"ws://127.0.0.1:{port}/ws/v1/live"
                extra = ["--url", live_url, "--tokens", json.dumps(tokens)]
            command = [
                sys.executable, "-m", "bench.connect_storm", "--loadgen",
                "--background", str(args.background), "--storm", str(args.storm),
                "--rate", str(args.rate), "--seconds", str(args.seconds),
                "--warmup", str(args.warmup), *extra,
            ]  # fmt: skip
            gen = subprocess.Popen(  # noqa: S603
                command, cwd=ROOT, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True, preexec_fn=pinned(self.client_cores),
            )  # fmt: skip
            try:
                assert gen.stdin is not None
                assert gen.stdout is not None
                expect(gen.stdout, "WARM")
                rss_before = rss_kib(server.pid)
                gen.stdin.write("GO\n")
                gen.stdin.flush()
                _, storm_at = (float(v) for v in expect(gen.stdout, "READY").split())
                time.sleep(max(0.0, storm_at - time.monotonic()))
                cpu0, wall0 = cpu_ns(server.pid), time.monotonic()
                time.sleep(max(1.0, args.storm / args.rate))
                storm_cpu = (cpu_ns(server.pid) - cpu0) / 1e9 / (time.monotonic() - wall0)
                result: dict[str, Any] = json.loads(expect(gen.stdout, "RESULT"))
                rss_after = rss_kib(server.pid)
                gen.wait(30)
            finally:
                stop(gen)
            log = next(self.workdir.glob(f"daphne-{path}-{port}.log"))
        if path == "platform":
            upstream = _upstream_from_log(log)
            for row in result["storm"]:
                row["upstream_ms"] = upstream.get(row["session"])
        result["storm_cpu"] = storm_cpu
        result["rss_mib"] = rss_after / 1024
        result["rss_before_mib"] = rss_before / 1024
        return result


def _upstream_from_log(log: Path) -> dict[str, float]:
    """session id → upstream_ms from the platform's JSON ``session started`` lines."""
    found: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if '"session started"' not in line:
            continue
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("upstream_ms") is not None and record.get("session"):
                found[str(record["session"])] = float(record["upstream_ms"])
    return found


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> str:
    rows, bg_rows = [], []
    for path, r in results.items():
        starts = [s["start_ms"] for s in r["storm"]]
        upstream = [s["upstream_ms"] for s in r["storm"] if s["upstream_ms"] is not None]
        own = [s["start_ms"] - s["upstream_ms"] for s in r["storm"] if s["upstream_ms"] is not None]
        q = lambda values, p: fmt(percentile(values, p) if values else None, 1)  # noqa: E731
        rows.append(
            f"| {path} | {len(starts)} of {args.storm} | {q(starts, 50)} / {q(starts, 99)} | "
            f"{q(upstream, 50)} / {q(upstream, 99)} | "
            f"{q(own, 50)} / {q(own, 95)} / {q(own, 99)} / {q(own, 100)} | "
            f"{fmt(r['storm_cpu'] * 100, 0)} | {r['storm_error_count']} |"
        )
        b = r["background"]
        bg_rows.append(
            f"| {path} | {args.background} | {q(b['up_ms'], 50)} / {q(b['up_ms'], 99)} | "
            f"{q(b['down_ms'], 50)} / {q(b['down_ms'], 99)} | {b['lost']} of {b['measured']} | "
            f"{b['behind']} (max lag {fmt(max(b['lag_ms'], default=float('nan')), 1)} ms) | "
            f"{fmt(r['rss_mib'], 0)} |"
        )
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("Django", "channels", "daphne", "google-genai")
    )
    load = os.getloadavg()
    return "\n".join(
        [
            f"Run {dt.datetime.now(dt.UTC).isoformat(timespec='minutes')}, {os.cpu_count()} vCPU, "
            f"Python {platform.python_version()}, {versions}; load average before the run "
            f"{load[0]:.2f}. {args.background} sessions stream; after {args.warmup:.0f} s, "
            f"{args.storm} sessions connect at {args.rate:.0f}/s into the same Daphne process.",
            "",
            "Storm session start, ms (client-measured connect → `session.started`; "
            "p50 / p99, own share p50 / p95 / p99 / max):",
            "",
            "| Path | Started | Start p50 / p99 | Upstream handshake p50 / p99 | "
            "Start excl. upstream p50 / p95 / p99 / max | Daphne CPU % during the storm | Errors |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Streaming sessions during the storm (per-frame ms, p50 / p99, over "
            f"{args.seconds:.0f} s from the storm's start):",
            "",
            "| Path | Streams | Up | Down | Frames lost | Behind real time | RSS MiB after |",
            "|---|---|---|---|---|---|---|",
            *bg_rows,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--tokens", default="", help=argparse.SUPPRESS)
    parser.add_argument("--background", type=int, default=50, help="streaming sessions")
    parser.add_argument("--storm", type=int, default=200, help="sessions connecting at once")
    parser.add_argument("--rate", type=float, default=200.0, help="storm connects per second")
    parser.add_argument("--seconds", type=float, default=4.0, help="streaming measured")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--paths", default="bare,platform")
    parser.add_argument("--no-compression", action="store_true")
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/voice_platform_bench"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--output", type=Path, help="also write the markdown here")
    # Options of bench/bridge_bench.py's harness this bench does not use.
    parser.set_defaults(tracemalloc=None)
    args = parser.parse_args()
    if args.loadgen:
        print("RESULT " + json.dumps(asyncio.run(loadgen(args))), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="storm-") as tmp:
        bench = StormBench(args, Path(tmp))
        bench.start_emulator()
        try:
            if "platform" in args.paths:
                bench.prepare_database()
            results = {path: bench.run_path(path) for path in args.paths.split(",")}
        finally:
            stop(bench.emulator)
    text = report(args, results)
    print(text)
    for path, r in results.items():
        if r["storm_errors"] or r["background"]["errors"]:
            print(f"{path}: {r['storm_errors']} {r['background']['errors']}", file=sys.stderr)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
