"""``python manage.py bootstrap_demo [--json]``: the same as ``bootstrap --demo``."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Create (or reuse) the demo tenant, admin user and agent; print a new API key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON only")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("bootstrap", demo=True, json=options["json"], stdout=self.stdout)
