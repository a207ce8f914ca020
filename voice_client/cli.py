"""`voice-agent`: the console client (being written)."""

from __future__ import annotations


def main() -> int:
    raise SystemExit("voice-agent: not available yet")
