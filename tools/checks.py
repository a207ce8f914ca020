"""System checks for what the tool call path needs from the database."""

from __future__ import annotations

import sqlite3
from typing import Any

from django.core import checks
from django.db import connections

SQLITE_RETURNING = (3, 35, 0)  # UPDATE ... RETURNING, used to claim a call in one statement


def returning_errors(vendor: str, sqlite_version: tuple[int, ...]) -> list[checks.Error]:
    if vendor != "sqlite" or sqlite_version >= SQLITE_RETURNING:
        return []
    shown = ".".join(str(part) for part in sqlite_version)
    return [
        checks.Error(
            f"SQLite {shown} is too old for tool calls: they need 3.35 or newer "
            "(UPDATE ... RETURNING).",
            hint="Use PostgreSQL (DATABASE_URL) or a Python built with a newer SQLite.",
            id="tools.E001",
        )
    ]


@checks.register(checks.Tags.database)
def sqlite_supports_returning(app_configs: Any = None, **kwargs: Any) -> list[checks.Error]:
    return returning_errors(connections["default"].vendor, sqlite3.sqlite_version_info)
