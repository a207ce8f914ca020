"""Fault injection: what can go wrong on one connection, and how a client asks for it.

A connection gets its faults from, in order of precedence: the `x-emulator-faults`
handshake header (a real SDK client sets it through
`LiveConnectConfig(http_options=HttpOptions(headers=...))`), the server's queue of
"next connection" faults, or the server-wide default.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, fields, replace

FAULTS_HEADER = "x-emulator-faults"


@dataclass(frozen=True)
class Faults:
    """Counts are client messages received after `setup` (the Nth one is not answered).

    Service-side delays (`lifetime`, `go_away_notice`, `drop_after_tool_*`, `*_at`) are
    divided by `EmulatorConfig.time_scale`; `stall_setup` and `reply_delay` are not.
    """

    close_after: int | None = None
    close_code: int = 1011
    close_reason: str = "Internal error encountered."
    # Abort the TCP connection without a close frame (the client sees 1006).
    drop_after: int | None = None
    # Seconds after the first `toolCall` sent on the connection at which to abort it like
    # `drop_after`; 0 = right after sending it, before any `toolResponse` is read.
    drop_after_tool_call: float | None = None
    # Seconds after the first `toolResponse` received at which to abort it likewise; 0 = at
    # once: the response is not acted on and nothing more is sent (no reply, no turnComplete).
    drop_after_tool_response: float | None = None
    # Abort like `drop_after` right after the Nth `turnComplete` of the connection (1-based),
    # before its `sessionResumptionUpdate`: the turn was answered, its handle never came.
    drop_before_handle: int | None = None
    # Seconds to wait before `setupComplete`; `inf` never sends it.
    stall_setup: float = 0.0
    # Stop reading and writing without closing (pings go unanswered too).
    black_hole_after: int | None = None
    # Seconds to wait before every reply turn starts.
    reply_delay: float = 0.0
    # Connection lifetime and goAway notice for this connection only.
    lifetime: float | None = None
    go_away_notice: float | None = None
    # Reply pace for this connection only (not a fault, but set the same way).
    pace: float | None = None
    # Stalls (googleapis/python-genai#2117): the next N reply turns of this connection end
    # with an empty `turnComplete` (`empty_turns`), then the next M get no answer at all
    # (`silent_turns`).
    empty_turns: int = 0
    silent_turns: int = 0
    # Refuse this connection's `setup` with this close (after the client's setup).
    refuse_code: int | None = None
    refuse_reason: str = ""
    # Seconds after `setupComplete` (divided by `time_scale`): close with `close_code` /
    # `close_reason`, abort the TCP connection, or go dark like `black_hole_after`.
    close_at: float | None = None
    drop_at: float | None = None
    black_hole_at: float | None = None

    @property
    def is_empty(self) -> bool:
        return self == Faults()

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """Parse `key=value; key=value` (semicolons, since a reason may hold commas)."""
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = {}
        for item in spec.split(";"):
            if not item.strip():
                continue
            key, sep, raw = item.partition("=")
            key, raw = key.strip(), raw.strip()
            if not sep or key not in kinds:
                raise ValueError(f"unknown fault setting: {item.strip()!r}")
            kind = str(kinds[key])
            if kind.startswith("str"):
                values[key] = raw
            elif kind.startswith("int"):
                values[key] = int(raw)
            else:
                values[key] = math.inf if raw == "inf" else float(raw)
        return cls(**values)  # type: ignore[arg-type]

    def to_header(self) -> str:
        """The inverse of `parse`, for `x-emulator-faults`."""
        default = Faults()
        parts = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        ]
        return "; ".join(parts)

    def with_(self, **changes: object) -> Faults:
        return replace(self, **changes)  # type: ignore[arg-type]


class FaultRegistry:
    """Server-wide default plus a FIFO of faults for the next connections."""

    def __init__(self, default: Faults) -> None:
        self.default = default
        self._next: deque[Faults] = deque()

    def queue_next(self, faults: Faults) -> None:
        self._next.append(faults)

    def for_connection(self, header: str | None) -> Faults:
        if header:
            return Faults.parse(header)
        if self._next:
            return self._next.popleft()
        return self.default
