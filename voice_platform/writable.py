"""Services that update a row from keyword fields: only the fields they name may change."""

from __future__ import annotations

from typing import Any


def assign_writable(obj: Any, fields: dict[str, Any], writable: tuple[str, ...]) -> None:
    """Set ``fields`` on ``obj``; a field outside ``writable`` is a programming error."""
    for name, value in fields.items():
        if name not in writable:
            raise ValueError(f"{name} is not writable")
        setattr(obj, name, value)
