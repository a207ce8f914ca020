"""``SessionTelemetry``: what one live connection reports, to metrics and traces at once.

The bridge and the tool gateway call it at the moments that matter (never per audio
frame: traffic arrives as deltas at each flush). Telemetry must never break a call, so
every output is guarded: a failing exporter costs its figures, not the conversation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from voice_platform.observability import metrics, tracing
from voice_platform.observability.labels import SessionLabels

if TYPE_CHECKING:
    from sessions.turn_timing import TurnTiming

log = logging.getLogger(__name__)


def _guarded(what: str, call: Callable[[], Any]) -> None:
    try:
        call()
    except Exception:
        log.warning("telemetry: %s failed", what, exc_info=True)


class SessionTelemetry:
    def __init__(self, labels: SessionLabels, *, resumed: bool) -> None:
        self.labels = labels
        self.resumed = resumed
        try:
            self.trace = tracing.session_trace(labels, resumed=resumed)
        except Exception:  # a broken exporter costs the traces, never the call
            log.warning("telemetry: tracing unavailable", exc_info=True)
            self.trace = tracing.SessionTrace()
        self._open = False

    def started(
        self, *, start_seconds: float | None = None, upstream_seconds: float | None = None
    ) -> None:
        """The session is served; ``start_seconds`` from the connect, ``upstream_seconds``
        of it the model's handshake (both None when not timed)."""
        self._open = True
        extra: dict[str, object] = {"resumed": self.resumed}
        if start_seconds is not None:
            extra["start_ms"] = round(start_seconds * 1000, 1)
            extra["upstream_ms"] = (
                None if upstream_seconds is None else round(upstream_seconds * 1000, 1)
            )
        log.info("session started", extra=extra)
        _guarded("started", lambda: metrics.session_started(self.labels, resumed=self.resumed))
        if start_seconds is not None:
            platform = start_seconds - (upstream_seconds or 0.0)
            _guarded(
                "start timed",
                lambda: metrics.session_start_timed(
                    platform_seconds=platform, upstream_seconds=upstream_seconds
                ),
            )

    def closed(self, *, ended_reason: str | None = None, failed: bool = False) -> None:
        """The connection stops serving the session; ``ended_reason`` when it ended."""
        labels = self.labels
        if self._open:  # a connection that never became ready was never counted
            self._open = False
            if ended_reason is not None:
                log.info("session ended: %s", ended_reason, extra={"reason": ended_reason})
            else:
                log.info("session left this connection (resumable)")
            _guarded("closed", lambda: metrics.connection_closed(labels))
            if ended_reason is not None:
                _guarded(
                    "ended",
                    lambda: metrics.session_ended(labels, reason=ended_reason, failed=failed),
                )
        reason = ended_reason or "detached"
        # Its span ends either way (a second end does nothing).
        _guarded("trace end", lambda: self.trace.end(reason=reason, failed=failed))

    def reconnected(self, *, cause: str, gap_seconds: float | None) -> None:
        labels = self.labels
        _guarded(
            "reconnected",
            lambda: metrics.reconnected(labels, cause=cause, gap_seconds=gap_seconds),
        )
        _guarded(
            "trace reconnect",
            lambda: self.trace.reconnected(cause=cause, gap_seconds=gap_seconds),
        )

    def traffic(self, counters: dict[str, int]) -> None:
        labels = self.labels
        _guarded(
            "traffic",
            lambda: metrics.traffic(
                labels,
                frames_in=counters.get("client_frames_in", 0),
                bytes_in=counters.get("client_bytes_in", 0),
                frames_out=counters.get("model_frames_out", 0),
                bytes_out=counters.get("model_bytes_out", 0),
            ),
        )
        if counters.get("prompt_tokens") or counters.get("response_tokens"):
            _guarded(
                "tokens",
                lambda: metrics.tokens(
                    labels,
                    input_tokens=counters.get("prompt_tokens", 0),
                    output_tokens=counters.get("response_tokens", 0),
                ),
            )

    def turn_started(self, turn: int) -> None:
        _guarded("trace turn", lambda: self.trace.turn_started(turn))

    def turn_finished(self, timing: TurnTiming) -> None:
        log.info(
            "turn %d %s in %s ms",
            timing.turn,
            timing.outcome,
            timing.reply_ms,
            extra={"timing": timing.as_dict()},
        )
        _guarded("turn", lambda: metrics.turn_timed(self.labels, timing))
        _guarded("trace turn end", lambda: self.trace.turn_finished(timing))

    def turn_words(self, role: str, text: str) -> None:
        """An utterance of the turn (user content: traced only when a setting allows)."""
        _guarded("trace words", lambda: self.trace.turn_words(role, text))

    def tool_started(self, key: str, name: str, call_id: str | None = None) -> None:
        """``key``: the request's idempotency key; ``call_id``: the model's id for it."""
        _guarded("trace tool", lambda: self.trace.tool_started(key, name, call_id))

    def tool_finished(self, key: str, name: str, status: str, seconds: float) -> None:
        log.info(
            "tool %s %s after %.3f s",
            name,
            status,
            seconds,
            extra={"tool": name, "status": status, "seconds": round(seconds, 3)},
        )
        labels = self.labels
        _guarded(
            "tool",
            lambda: metrics.tool_finished(labels, name=name, status=status, seconds=seconds),
        )
        _guarded("trace tool end", lambda: self.trace.tool_finished(key, status=status))
