"""Command-line flags shared by `manage.py live_emulator` and `python -m ...live_emulator`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Protocol

from voice_platform.live_emulator.config import DEFAULT_CERT_DIR, DEFAULT_MODELS, EmulatorConfig
from voice_platform.live_emulator.faults import Faults
from voice_platform.live_emulator.server import Emulator


class Output(Protocol):
    """sys.stdout or Django's OutputWrapper."""

    def write(self, text: str, /) -> object: ...

    def flush(self) -> None: ...


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = EmulatorConfig()
    add = parser.add_argument
    add("--host", default=defaults.host, help="interface to bind (default 127.0.0.1)")
    add("--port", type=int, default=defaults.port, help="port (0 picks a free one)")
    add("--cert-dir", type=Path, default=DEFAULT_CERT_DIR, help="holds cert.pem and key.pem")
    add("--api-key", action="append", default=[], help="accept only this key (repeatable)")
    add(
        "--model",
        action="append",
        default=[],
        help=f"served model (repeatable; default {', '.join(DEFAULT_MODELS)})",
    )
    add("--pace", type=float, default=defaults.pace, help="reply speed: 1 real time, 0 no wait")
    add("--chunk-ms", type=int, default=defaults.chunk_ms, help="reply audio chunk length")
    add("--vad-threshold", type=float, default=defaults.vad_threshold, help="speech RMS (int16)")
    add("--vad-silence-ms", type=int, default=defaults.vad_silence_ms, help="silence ending a turn")
    add("--connection-lifetime", type=float, default=defaults.connection_lifetime, help="seconds")
    add("--go-away-notice", type=float, default=defaults.go_away_notice, help="seconds")
    add(
        "--session-limit",
        type=float,
        default=defaults.session_limit_audio,
        help="audio-only session limit without compression, seconds",
    )
    add("--handle-ttl", type=float, default=defaults.handle_ttl, help="resumption handle TTL")
    add("--faults", default="", help="server-wide faults, e.g. 'close_after=3; close_code=1011'")
    add("--no-compression", action="store_true", help="refuse permessage-deflate")
    add("--no-record", action="store_true", help="do not record received messages")
    add(
        "--echo-frames",
        action="store_true",
        help="bench loopback: answer every audio chunk at once with the same bytes, stamped",
    )


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    defaults = EmulatorConfig()
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        cert_dir=Path(args.cert_dir),
        api_keys=frozenset(args.api_key),
        models=tuple(args.model) or defaults.models,
        pace=args.pace,
        chunk_ms=args.chunk_ms,
        vad_threshold=args.vad_threshold,
        vad_silence_ms=args.vad_silence_ms,
        connection_lifetime=args.connection_lifetime,
        go_away_notice=args.go_away_notice,
        session_limit_audio=args.session_limit,
        handle_ttl=args.handle_ttl,
        faults=Faults.parse(args.faults) if args.faults else Faults(),
        compression=not args.no_compression,
        record=not args.no_record,
        echo_frames=args.echo_frames,
    )


async def serve_until_signalled(config: EmulatorConfig, out: Output = sys.stdout) -> None:
    """Run until SIGINT/SIGTERM, then stop cleanly."""
    emulator = Emulator(config)
    await emulator.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    # Announce only once a signal stops us cleanly: supervisors wait for this line.
    _say(out, f"Live emulator listening on {emulator.base_url}")
    _say(out, f"Certificate: {emulator.cert_path.resolve()}")
    try:
        await stop.wait()
    finally:
        await emulator.stop()
        _say(out, f"Pacing: {emulator.pace_stats.summary()}")
        _say(out, "Live emulator stopped")


def _say(out: Output, line: str) -> None:
    # write() rather than print(): Django's OutputWrapper adds its own line endings.
    out.write(line + "\n")
    out.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="live_emulator", description=__doc__)
    add_arguments(parser)
    asyncio.run(serve_until_signalled(config_from_args(parser.parse_args(argv))))
