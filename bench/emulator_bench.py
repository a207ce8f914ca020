"""Load benchmark of the Live emulator: N concurrent audio sessions driven by the real SDK.

    .venv/bin/python -m bench.emulator_bench --sessions 200 --seconds 20

The emulator runs in its own process pinned to core 0; the SDK clients run in
`--clients` processes pinned to core 1. Every session streams 100 ms frames of 16 kHz
audio in real time: `--speech` seconds of a tone, then `--gap` seconds of silence, and the
emulator echoes each utterance back at 24 kHz, paced in real time. Reported: reply audio
delivered vs expected, lag of each reply chunk behind its real-time schedule, response
latency after the VAD's silence window, and the emulator's CPU use.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FRAME_S = 0.1
RATE = 16_000
VAD_SILENCE_S = 0.5  # the emulator's default end-of-turn silence


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# --- worker process: drives sessions with the SDK ------------------------------------


async def run_session(client, model, start_at, seconds, speech, gap, stats, phase) -> None:
    from google.genai import types

    from voice_client import audio

    loud = audio.tone(FRAME_S, 440.0, 0.3, RATE)  # one frame; every frame starts in phase
    quiet = audio.silence(FRAME_S, RATE)
    cycle = round((speech + gap) / FRAME_S)
    speech_frames = round(speech / FRAME_S)
    async with client.aio.live.connect(model=model, config={"response_modalities": ["AUDIO"]}) as s:
        loop = asyncio.get_running_loop()
        speech_ends: list[float] = []

        async def receive() -> None:
            while True:
                first = None
                received = 0.0
                async for message in s.receive():
                    if message.data:
                        now = loop.time()
                        if first is None:
                            first = now
                            if speech_ends:
                                stats["latency"].append(now - speech_ends[-1] - VAD_SILENCE_S)
                        else:
                            stats["lag"].append(now - (first + received))
                        received += len(message.data) / 2 / 24_000
                if first is not None:
                    stats["delivered"].append(received)

        receiver = asyncio.create_task(receive())
        delay = start_at - time.time()
        await asyncio.sleep(max(0.0, delay))
        begin = loop.time() + phase
        frames = int(seconds / FRAME_S)
        try:
            for index in range(frames):
                # Like a microphone: a frame leaves once its 100 ms have been recorded.
                await asyncio.sleep(max(0.0, begin + (index + 1) * FRAME_S - loop.time()))
                in_speech = index % cycle < speech_frames
                blob = types.Blob(
                    data=loud if in_speech else quiet, mime_type="audio/pcm;rate=16000"
                )
                await s.send_realtime_input(audio=blob)
                if index % cycle == speech_frames - 1:
                    speech_ends.append(loop.time())
                    stats["expected"].append(speech)
            await asyncio.sleep(speech + 1.0)  # let the last reply finish
        finally:
            receiver.cancel()


async def worker(args: argparse.Namespace) -> None:
    import ssl

    from google import genai
    from google.genai import types

    ctx = ssl.create_default_context(cafile=args.cert)
    client = genai.Client(
        api_key="bench",
        http_options=types.HttpOptions(
            base_url=args.base_url, api_version="v1beta", async_client_args={"ssl": ctx}
        ),
    )
    stats: dict[str, list[float]] = {"lag": [], "latency": [], "delivered": [], "expected": []}
    errors: list[str] = []

    async def guarded(index: int) -> None:
        # Stagger connects so that TLS handshakes do not all land at once.
        await asyncio.sleep(index * args.stagger)
        try:
            await run_session(
                client,
                args.model,
                args.start_at,
                args.seconds,
                args.speech,
                args.gap,
                stats,
                # Spread the sessions over the speech/silence cycle, as real users are.
                phase=(args.first_index + index) / args.total * (args.speech + args.gap),
            )
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(guarded(i) for i in range(args.sessions)))
    print(json.dumps({"stats": stats, "errors": errors[:5], "error_count": len(errors)}))


# --- orchestrator ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--speech", type=float, default=1.5)
    parser.add_argument("--gap", type=float, default=2.5)
    parser.add_argument("--chunk-ms", type=int, default=40)
    parser.add_argument("--no-compression", action="store_true")
    parser.add_argument("--output", type=Path, help="also write the markdown table here")
    # Internal: run as a client worker.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--cert", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="gemini-2.5-flash-native-audio-preview-12-2025")
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--stagger", type=float, default=0.01, help=argparse.SUPPRESS)
    parser.add_argument("--first-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--total", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args))
        return
    orchestrate(args)


def orchestrate(args: argparse.Namespace) -> None:
    cores = sorted(os.sched_getaffinity(0))
    server_core, client_cores = cores[0], set(cores[1:] or cores)
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryDirectory() as cert_dir:
        command = [
            sys.executable,
            "-m",
            "voice_platform.live_emulator",
            "--port",
            "0",
            "--cert-dir",
            cert_dir,
            "--no-record",
            "--chunk-ms",
            str(args.chunk_ms),
            "--connection-lifetime",
            "3600",
            "--go-away-notice",
            "60",
        ]
        if args.no_compression:
            command.append("--no-compression")
        server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)  # noqa: S603
        os.sched_setaffinity(server.pid, {server_core})
        clients: list[subprocess.Popen[str]] = []
        try:
            assert server.stdout is not None
            base_url = server.stdout.readline().split()[-1]
            cert = server.stdout.readline().split(": ", 1)[1].strip()
            per_client = [args.sessions // args.clients] * args.clients
            per_client[0] += args.sessions - sum(per_client)
            connect_budget = 3.0 + args.sessions * 0.03
            start_at = time.time() + connect_budget
            for number, count in enumerate(per_client):
                worker_cmd = [
                    sys.executable,
                    "-m",
                    "bench.emulator_bench",
                    "--worker",
                    "--sessions",
                    str(count),
                    "--seconds",
                    str(args.seconds),
                    "--speech",
                    str(args.speech),
                    "--gap",
                    str(args.gap),
                    "--base-url",
                    base_url,
                    "--cert",
                    cert,
                    "--start-at",
                    str(start_at),
                    "--stagger",
                    str(connect_budget * 0.6 / max(1, count)),
                    "--first-index",
                    str(sum(per_client[:number])),
                    "--total",
                    str(args.sessions),
                ]
                proc = subprocess.Popen(worker_cmd, env=env, stdout=subprocess.PIPE, text=True)  # noqa: S603
                os.sched_setaffinity(proc.pid, client_cores)
                clients.append(proc)
            time.sleep(max(0.0, start_at - time.time()))
            cpu_start, wall_start = cpu_seconds(server.pid), time.monotonic()
            client_start = sum(cpu_seconds(p.pid) for p in clients)
            time.sleep(args.seconds)
            cpu_used, wall = cpu_seconds(server.pid) - cpu_start, time.monotonic() - wall_start
            client_cpu = (sum(cpu_seconds(p.pid) for p in clients) - client_start) / wall
            results = [json.loads(p.communicate(timeout=args.seconds + 120)[0]) for p in clients]
            server.terminate()
            pacing = next(
                (
                    ln.split(": ", 1)[1]
                    for ln in server.communicate(timeout=30)[0].splitlines()
                    if ln.startswith("Pacing:")
                ),
                "-",
            )
        finally:
            for proc in [*clients, server]:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
    report(args, results, cpu_used / wall, client_cpu, pacing)


def report(
    args: argparse.Namespace,
    results: list[dict],
    cpu_share: float,
    client_cpu: float,
    pacing: str,
) -> None:
    merged: dict[str, list[float]] = {"lag": [], "latency": [], "delivered": [], "expected": []}
    for result in results:
        for key in merged:
            merged[key].extend(result["stats"][key])
    errors = sum(r["error_count"] for r in results)
    delivered, expected = sum(merged["delivered"]), sum(merged["expected"])
    lag_ms = [v * 1000 for v in merged["lag"]]
    latency_ms = [v * 1000 for v in merged["latency"]]
    rows = [
        ("Sessions (errors)", f"{args.sessions} ({errors})"),
        ("Measured window", f"{args.seconds:.0f} s, {args.speech} s speech + {args.gap} s silence"),
        (
            "Replies completed / utterances",
            f"{len(merged['delivered'])} / {len(merged['expected'])}",
        ),
        ("Reply audio delivered / expected", f"{delivered:.0f} s / {expected:.0f} s"),
        (
            "Reply audio per reply (mean)",
            f"{statistics.fmean(merged['delivered']):.2f} s" if merged["delivered"] else "-",
        ),
        (
            "Chunk lag behind real time p50 / p99 / max",
            f"{percentile(lag_ms, 50):.1f} / {percentile(lag_ms, 99):.1f} / "
            f"{max(lag_ms, default=float('nan')):.1f} ms",
        ),
        (
            "First reply chunk after VAD window p50 / p99",
            f"{percentile(latency_ms, 50):.0f} / {percentile(latency_ms, 99):.0f} ms",
        ),
        ("Emulator CPU (its one core)", f"{cpu_share * 100:.0f} %"),
        ("Emulator's own send lateness (whole run)", pacing),
        ("SDK client CPU (other core)", f"{client_cpu * 100:.0f} %"),
        ("Reply chunk", f"{args.chunk_ms} ms; deflate {'off' if args.no_compression else 'on'}"),
    ]
    lines = [
        f"Run {dt.datetime.now(dt.UTC).date().isoformat()}, {os.cpu_count()} vCPU, Python "
        f"{platform.python_version()}, emulator pinned to one core, "
        f"{args.clients} SDK client process(es) on the other.",
        "",
        "| Metric | Value |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
    ]
    table = "\n".join(lines)
    print(table)
    if args.output:
        args.output.write_text(table + "\n")


if __name__ == "__main__":
    main()
