"""OpenTelemetry traces of live sessions (placeholder: spans land here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sessions.turn_timing import TurnTiming
    from voice_platform.observability.labels import SessionLabels


class SessionTrace:
    """The spans of one connection: session -> turn -> tool. No-op when tracing is off."""

    def __init__(self, labels: SessionLabels, *, resumed: bool) -> None:
        self.labels = labels

    def turn_started(self, turn: int) -> None:
        """The user's speech ended: a turn span opens (child of the session span)."""

    def turn_finished(self, timing: TurnTiming) -> None:
        """The turn is over: its span closes with the timing's figures as attributes."""

    def turn_words(self, role: str, text: str) -> None:
        """One utterance of the open turn ("user" or "model"): user content, recorded on the
        turn span only when TRACING_INCLUDE_CONTENT allows it."""

    def tool_started(self, key: str, name: str) -> None:
        """A tool call began: a span opens under the open turn (or the session)."""

    def tool_finished(self, key: str, *, status: str) -> None:
        """A tool call settled: its span closes."""

    def reconnected(self, *, cause: str, gap_seconds: float | None) -> None:
        """An upstream outage ended: an event on the session span."""

    def end(self, *, reason: str) -> None:
        """The connection stopped serving the session: every open span closes."""


def session_trace(labels: SessionLabels, *, resumed: bool) -> SessionTrace:
    return SessionTrace(labels, resumed=resumed)
