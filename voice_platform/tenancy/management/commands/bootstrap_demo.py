"""``python manage.py bootstrap_demo [--json]``: idempotent demo data for ``make run``."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from voice_platform.demo import demo_bootstrap


class Command(BaseCommand):
    help = "Create (or reuse) the demo tenant, admin user and agent; print a new API key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON only")

    def handle(self, *args: Any, **options: Any) -> None:
        data = demo_bootstrap()
        if options["json"]:
            self.stdout.write(json.dumps(data.as_json()))
            return
        self.stdout.write(
            self.style.SUCCESS("Demo ready.")
            + f"\n  tenant:   {data.tenant}"
            + f"\n  admin:    {data.admin_username} / {data.admin_password}"
            + f"\n  agent id: {data.agent_id}"
            + f"\n  API key:  {data.api_key}  (new on every call; shown once)"
        )
