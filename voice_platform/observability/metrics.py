"""Prometheus metrics of live sessions (placeholder: the metric definitions land here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sessions.turn_timing import TurnTiming
    from voice_platform.observability.labels import SessionLabels


def session_started(labels: SessionLabels, *, resumed: bool) -> None:
    """A connection began serving a session (``resumed``: an existing one came back)."""


def connection_closed(labels: SessionLabels) -> None:
    """A connection stopped serving its session (ended, detached, superseded, restart)."""


def session_ended(labels: SessionLabels, *, reason: str, failed: bool) -> None:
    """The session ended for good with ``reason``."""


def reconnected(labels: SessionLabels, *, cause: str, gap_seconds: float | None) -> None:
    """An upstream outage ended (``gap_seconds`` None: it never recovered)."""


def traffic(
    labels: SessionLabels, *, frames_in: int, bytes_in: int, frames_out: int, bytes_out: int
) -> None:
    """Deltas of client frames/bytes up and model frames/bytes down since the last call."""


def tokens(labels: SessionLabels, *, input_tokens: int, output_tokens: int) -> None:
    """Token usage deltas."""


def turn_timed(labels: SessionLabels, timing: TurnTiming) -> None:
    """A finished turn's timing (``sessions.turn_timing.TurnTiming``)."""


def tool_finished(labels: SessionLabels, *, name: str, status: str, seconds: float) -> None:
    """A tool call settled with ``status`` after ``seconds`` (as the conversation waited)."""
