"""``manage.py tools_sync``: mirror the code registry into the Tool table."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from tools.services import tool_sync_registry


class Command(BaseCommand):
    help = "Upsert Tool rows from the registry; mark tools missing from code unavailable."

    def handle(self, *args: Any, **options: Any) -> None:
        report = tool_sync_registry()
        self.stdout.write(
            f"created {len(report.created)}, updated {len(report.updated)}, "
            f"unavailable {len(report.unavailable)}"
        )
        for name in report.unavailable:
            self.stdout.write(f"  unavailable: {name}")
