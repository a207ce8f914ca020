"""``python manage.py loadtest``: simulated callers against a deployment (docs/loadtest.md).

Options are checked here, in Django's process; the callers run in a process of their own
(loadtest/generate.py says why), so a bad option costs nothing and never touches the target.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from loadtest.audio import load_utterance
from loadtest.config import (
    DEFAULT_TARGET,
    DEFAULT_TOOL_TURN_TEXT,
    LoadConfig,
    loopback_target,
    normalise_target,
)
from loadtest.report import table

API_KEY_ENV = "LOADTEST_API_KEY"
METRICS_TOKEN_ENV = "LOADTEST_METRICS_TOKEN"  # noqa: S105  (a variable name)


def _positive(kind: type[int] | type[float], low: float = 0.0, high: float | None = None) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < low or (high is not None and value > high):
            top = "" if high is None else f" and at most {high:g}"
            raise argparse.ArgumentTypeError(f"{text}: must be at least {low:g}{top}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def generate(config: LoadConfig) -> dict[str, Any]:
    """Run the callers in a process of their own (loadtest/generate.py says why)."""
    with tempfile.TemporaryDirectory(prefix="loadtest-") as workdir:
        report_path = Path(workdir) / "report.json"
        request = json.dumps({"config": config.to_json(), "report_path": str(report_path)})
        child = subprocess.Popen(
            [sys.executable, "-m", "loadtest.generate"], stdin=subprocess.PIPE, text=True
        )
        # Ctrl-C reaches the child too (same process group): it hangs up and reports.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            child.communicate(request)
        finally:
            signal.signal(signal.SIGINT, previous)
        if child.returncode != 0 or not report_path.exists():
            raise CommandError(f"the load generator failed (exit {child.returncode})")
        result: dict[str, Any] = json.loads(report_path.read_text())
        return result


class Command(BaseCommand):
    help = (
        "Simulated callers against a deployment: tokens over REST, turns over the live "
        "WebSocket; a live progress line and a final report (table, JSON)."
    )
    requires_system_checks: list[str] = []  # a client: it needs no database
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        add = parser.add_argument
        add(
            "--target",
            default=DEFAULT_TARGET,
            help=f"base URL of the deployment (default {DEFAULT_TARGET})",
        )
        add(
            "--allow-remote",
            action="store_true",
            help="allow a target that is not a literal loopback address or localhost "
            "(a name is then resolved by each connection)",
        )
        add("--api-key", help=f"the tenant API key (default: ${API_KEY_ENV})")
        add("--agent", type=_positive(int, 1), required=True, help="the agent id")
        add(
            "--callers",
            type=_positive(int, 1, 10_000),
            default=10,
            help="simulated callers (default 10)",
        )
        add(
            "--spawn-rate",
            type=_positive(float, 0.01),
            default=5.0,
            help="callers started per second (default 5)",
        )
        add(
            "--duration",
            type=_positive(float, 1, 86_400),
            default=60.0,
            help="seconds from the first start until the callers hang up (default 60)",
        )
        add(
            "--turns",
            type=_positive(int, 0),
            default=0,
            help="turns per call, then a new call; 0: one call for the whole run (default)",
        )
        add(
            "--wav",
            help="what callers say each spoken turn: a PCM WAV file "
            "(default: a synthesised 1.2 s speech-like utterance)",
        )
        # 100 ms is what the protocol recommends and our clients send; 20 ms (50 frames/s,
        # under the protocol's 100 messages/s) is what a phone-style client may send.
        add(
            "--frame-ms",
            type=_positive(int, 20, 1000),
            default=100,
            help="audio frame length, sent in real time (20 to 1000, default 100)",
        )
        add(
            "--pause",
            type=_positive(float, 0, 600),
            default=1.0,
            help="mean seconds between a reply's end and the next turn (default 1)",
        )
        add(
            "--barge-in-every",
            type=_positive(int, 0),
            default=0,
            help="every Nth turn talks over the reply before it (0: never)",
        )
        add(
            "--barge-in-after",
            type=_positive(float, 0, 60),
            default=0.3,
            help="seconds of reply before a barge-in starts (default 0.3)",
        )
        add(
            "--tool-every",
            type=_positive(int, 0),
            default=0,
            help="every Nth turn is the tool turn text (0: never)",
        )
        add(
            "--tool-turn-text",
            default=DEFAULT_TOOL_TURN_TEXT,
            help="the typed turn that makes the agent call a tool "
            f"(default, for the emulator: {DEFAULT_TOOL_TURN_TEXT!r})",
        )
        add(
            "--reply-timeout",
            type=_positive(float, 0.1, 600),
            default=15.0,
            help="seconds a turn waits for its reply before it counts as no_reply (15)",
        )
        add(
            "--echo",
            action="store_true",
            help="the upstream is the emulator with --echo-frames: time every frame",
        )
        add(
            "--metrics-token",
            help="read server CPU/RSS from /metrics with this bearer "
            f"token (default: ${METRICS_TOKEN_ENV})",
        )
        add(
            "--server-pid",
            type=_positive(int, 1),
            action="append",
            default=[],
            help="read server CPU/RSS of this local process (repeatable; wins over /metrics)",
        )
        add("--json", dest="json_path", help="write the report as JSON to this path")
        add(
            "--max-error-rate",
            type=_positive(float, 0, 1),
            default=0.01,
            help="exit 1 when errors per operation exceed this (default 0.01)",
        )
        add(
            "--no-warm-up",
            dest="warm_up",
            action="store_false",
            help="skip the one-turn call made before the server's baseline is read",
        )
        add("--quiet", action="store_true", help="no progress lines")
        add("--seed", type=int, default=1,
            help="seed of the pauses' jitter (default 1)")  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        config = self.config(options)
        json_path = Path(options["json_path"]) if options["json_path"] else None
        if json_path is not None and not json_path.parent.is_dir():
            raise CommandError(f"--json: the directory {json_path.parent} does not exist")
        result = generate(config)
        self.stdout.write(table(result))
        if json_path is not None:
            json_path.write_text(json.dumps(result, indent=2) + "\n")
        if not result["passed"]:
            raise CommandError(
                f"error rate {result['errors']['rate']:.2%} is above --max-error-rate "
                f"{config.max_error_rate:.2%}"
            )

    def config(self, options: dict[str, Any]) -> LoadConfig:
        try:
            target = normalise_target(options["target"])
            if not options["allow_remote"]:
                target = loopback_target(target)  # the address itself: never resolved
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        api_key = options["api_key"] or os.environ.get(API_KEY_ENV, "")
        if not api_key:
            raise CommandError(f"give the tenant API key: --api-key or ${API_KEY_ENV}")
        try:
            utterance = load_utterance(options["wav"])
        except ValueError as exc:
            raise CommandError(f"--wav: {exc}") from None
        if not options["tool_turn_text"].strip():
            raise CommandError("--tool-turn-text must not be empty")
        return LoadConfig(
            target=target,
            api_key=api_key,
            agent_id=options["agent"],
            callers=options["callers"],
            spawn_rate=options["spawn_rate"],
            duration=options["duration"],
            turns=options["turns"],
            utterance=utterance,
            frame_ms=options["frame_ms"],
            pause=options["pause"],
            barge_in_every=options["barge_in_every"],
            tool_every=options["tool_every"],
            tool_turn_text=options["tool_turn_text"],
            barge_in_after=options["barge_in_after"],
            reply_timeout=options["reply_timeout"],
            echo=options["echo"],
            metrics_token=options["metrics_token"] or os.environ.get(METRICS_TOKEN_ENV) or None,
            server_pids=tuple(options["server_pid"]),
            max_error_rate=options["max_error_rate"],
            quiet=options["quiet"],
            seed=options["seed"],
            warm_up=options["warm_up"],
        )
