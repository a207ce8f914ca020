"""`python manage.py live_emulator`: run the Gemini Live emulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from django.core.management.base import BaseCommand

from voice_platform.live_emulator import cli


class Command(BaseCommand):
    help = "Run the local Gemini Live emulator (TLS WebSocket + ephemeral-token REST)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        cli.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        config = cli.config_from_args(argparse.Namespace(**options))
        asyncio.run(cli.serve_until_signalled(config, out=self.stdout))
