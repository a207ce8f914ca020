"""`voice-agent --log-events FILE`: every JSON frame the server sent, one per line.

For debugging a client or an agent, and for the console's tests, which check each line
against sessions/protocol.schema.json. Credentials are masked: a resume token keeps its first
three characters (the ``rt_`` the schema asks for, so a wrong prefix still shows) and
loses the rest. A frame that is not JSON is written as a JSON string, still one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO

SECRET_KEYS = frozenset({"resume_token", "token"})
MASK = "<masked>"


def mask(value: Any) -> Any:
    """``value`` with every string under a secret key (at any depth) cut to its prefix."""
    if isinstance(value, dict):
        return {
            key: (item[:3] + MASK if key in SECRET_KEYS and isinstance(item, str) else mask(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [mask(item) for item in value]
    return value


def log_line(frame: str) -> str:
    """The line for one text frame (without the newline)."""
    try:
        data: Any = json.loads(frame)
    except (ValueError, RecursionError):
        data = frame
    return json.dumps(mask(data), separators=(",", ":"), ensure_ascii=False)


class EventLog:
    """An append-only log file, private to the user (mode 0600): it shows a conversation."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file: TextIO = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, frame: str) -> None:
        # Flushed per line: a console killed mid-session still leaves what it saw.
        self._file.write(log_line(frame) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
