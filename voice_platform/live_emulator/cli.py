"""Command-line flags shared by `manage.py live_emulator` and `python -m ...live_emulator`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any, Protocol

from voice_platform.live_emulator import certs
from voice_platform.live_emulator.config import DEFAULT_CERT_DIR, DEFAULT_MODELS, EmulatorConfig
from voice_platform.live_emulator.faults import Faults
from voice_platform.live_emulator.profiles import PROFILES, config_for
from voice_platform.live_emulator.server import Emulator

# Extra certificate names when no --cert-name is given (docker-compose.yml sets the flag).
CERT_NAMES_ENV = "EMULATOR_CERT_NAMES"


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
    add(
        "--cert-name",
        action="append",
        dest="cert_names",
        default=None,
        metavar="NAME",
        help="a host name or address clients dial, covered by the certificate besides "
        f"127.0.0.1 and localhost (repeatable; default from {CERT_NAMES_ENV}, comma-separated)",
    )
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
    _add_realistic_arguments(parser)


def _add_realistic_arguments(parser: argparse.ArgumentParser) -> None:
    """Knobs of the realistic profile. Unset flags keep the profile's value."""
    group = parser.add_argument_group("realistic profile (docs/emulator.md)")
    add = group.add_argument
    add("--profile", choices=PROFILES, default="default", help="set of knobs to start from")
    add("--time-scale", type=float, help="divide service-side durations by this (e.g. 60)")
    add("--seed", type=int, dest="random_seed", help="random seed, for reproducible runs")
    add("--pong-delay", type=float, nargs=2, metavar=("MIN", "MAX"), help="pong delay, seconds")
    add(
        "--refuse-resume-while-open",
        action=argparse.BooleanOptionalAction,
        help="refuse (1011) a resume while the session's older socket is open",
    )
    add("--dead-peer-timeout", type=float, help="seconds a vanished client still counts")
    add(
        "--go-away-notice-range",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="goAway notice drawn per connection, seconds",
    )
    add("--empty-turn-rate", type=float, help="probability of an empty turnComplete")
    add("--silent-turn-rate", type=float, help="probability a turn is never answered")
    add("--max-concurrent-sessions", type=int, help="refuse (1011) connections beyond this")
    add("--quota-refusal-rate", type=float, help="probability of a 1011 quota refusal")
    add("--not-implemented-rate", type=float, help="probability of 1008 at a function call")
    add(
        "--expired-api-key",
        action="append",
        dest="expired_api_keys",
        metavar="KEY",
        help="refuse this key with 1007 'API key expired' (repeatable)",
    )
    add(
        "--input-transcript-streaming",
        action=argparse.BooleanOptionalAction,
        help="stream inputTranscription pieces while the user speaks",
    )
    add("--input-transcript-lag", type=float, help="delay of each transcript piece, seconds")
    add("--usage-updates-per-turn", type=int, help="usageMetadata messages per reply")
    add(
        "--audio-tool-call",
        action="append",
        dest="audio_tool_calls",
        metavar="HZ=LINES",
        help="an audio turn at this pitch calls functions, e.g. 880='call f {\"q\": 1}' "
        "(lines separated by \\n; repeatable)",
    )
    add(
        "--tool-preamble",
        action=argparse.BooleanOptionalAction,
        help="say a short sentence before each toolCall",
    )
    add("--latency", type=float, help="one-way delay of every server message, seconds")
    add("--jitter", type=float, help="+/- uniform jitter on the latency, seconds")
    add("--realtime-audio-buffer", type=float, help="input read-ahead heard, seconds")


# Flags whose value goes to the `EmulatorConfig` field of the same name when given.
_REALISTIC_FIELDS = (
    "time_scale",
    "random_seed",
    "pong_delay",
    "refuse_resume_while_open",
    "dead_peer_timeout",
    "go_away_notice_range",
    "empty_turn_rate",
    "silent_turn_rate",
    "max_concurrent_sessions",
    "quota_refusal_rate",
    "not_implemented_rate",
    "input_transcript_streaming",
    "input_transcript_lag",
    "usage_updates_per_turn",
    "tool_preamble",
    "latency",
    "jitter",
    "realtime_audio_buffer",
)


def parse_audio_tool_calls(specs: list[str]) -> dict[int, str]:
    """`HZ=LINES` items (a literal `\\n` separates lines) into `audio_tool_calls`."""
    calls: dict[int, str] = {}
    for spec in specs:
        pitch, sep, lines = spec.partition("=")
        if not sep or not pitch.strip().isdigit():
            raise ValueError(f"expected HZ=LINES, got {spec!r}")
        lines = lines.strip().replace("\\n", "\n")
        hz = int(pitch)
        calls[hz] = f"{calls[hz]}\n{lines}" if hz in calls else lines
    return calls


def requested_cert_names(given: list[str] | None) -> tuple[str, ...]:
    """``--cert-name`` values, or else those of the environment variable."""
    if given:
        return tuple(given)
    return tuple(n.strip() for n in os.environ.get(CERT_NAMES_ENV, "").split(",") if n.strip())


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    defaults = EmulatorConfig()
    knobs: dict[str, Any] = {
        name: getattr(args, name)
        for name in _REALISTIC_FIELDS
        if getattr(args, name, None) is not None
    }
    for name in ("pong_delay", "go_away_notice_range"):
        if name in knobs:
            knobs[name] = tuple(knobs[name])
    if getattr(args, "expired_api_keys", None):
        knobs["expired_api_keys"] = frozenset(args.expired_api_keys)
    if getattr(args, "audio_tool_calls", None):
        knobs["audio_tool_calls"] = parse_audio_tool_calls(args.audio_tool_calls)
    return config_for(
        getattr(args, "profile", None) or "default",
        **knobs,
        host=args.host,
        port=args.port,
        cert_dir=Path(args.cert_dir),
        cert_names=requested_cert_names(getattr(args, "cert_names", None)),
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
    _say(out, f"Certificate names: {', '.join(sorted(certs.covered_names(emulator.cert_path)))}")
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
