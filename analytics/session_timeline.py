"""One call's timeline for its admin page: turns, tool calls and reconnects, as SVG and tables.

Turns come from the session's ``turn_timings`` (``sessions.turn_timing.TurnTiming``), tool
calls from its ``ToolCallRecord`` rows (read within the session's tenant), reconnects from
its ``reconnect_log``. Stored JSON is read defensively: an entry with a missing or odd field
is shown with what it has, never a 500.
"""

from __future__ import annotations

import bisect
import datetime
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone
from django.utils.safestring import SafeString

from analytics.svg_charts import (
    BLUE,
    GREEN,
    GREY,
    ORANGE,
    RED,
    SKY,
    Chart,
    Lane,
    Mark,
    Series,
    bar_chart,
    timeline,
)
from sessions.models import VoiceSession
from tools.models import ToolCallRecord

# The latency chart shows the newest turns only (the table below it lists all kept ones).
CHART_TURNS = 40
_EARLIEST = datetime.datetime.min.replace(tzinfo=datetime.UTC)
OUTCOME_COLORS = {"complete": BLUE, "interrupted": ORANGE, "unanswered": RED}
TOOL_COLORS = {"succeeded": GREEN, "failed": RED, "timeout": RED, "running": ORANGE}


@dataclass(frozen=True)
class TurnRow:
    turn: int
    at: datetime.datetime | None
    offset_s: float | None  # seconds since the call started
    reply_in_ms: float | None
    reply_out_ms: float | None
    playback_ms: float | None
    tool_ms: float
    reconnect_gap_ms: float
    outcome: str
    speech_end_source: str
    tool_calls: list[ToolCallRecord] = field(default_factory=list)

    @property
    def reply_ms(self) -> float | None:
        """As the user met it: heard when the client reported playback, else sent."""
        return self.playback_ms if self.playback_ms is not None else self.reply_out_ms


@dataclass(frozen=True)
class ReconnectRow:
    at: datetime.datetime | None
    offset_s: float | None
    cause: str
    gap_ms: float | None
    resumed: bool | None
    fresh_context: bool | None


@dataclass(frozen=True)
class SessionTimeline:
    duration_s: float
    turns: list[TurnRow]
    tool_calls: list[ToolCallRecord]
    reconnects: list[ReconnectRow]
    svg: SafeString
    latency: Chart | None  # None without any timed turn


def session_timeline(*, session: VoiceSession) -> SessionTimeline:
    start = session.started_at
    calls = list(
        # Within the session's own tenant, explicitly (the admin's scope filters too).
        ToolCallRecord.objects.filter(tenant_id=session.tenant_id, session_id=session.pk)
        .order_by("created_at", "id")
        .only(
            "id",
            "turn",
            "tool_name",
            "status",
            "created_at",
            "started_at",
            "finished_at",
            "duration_ms",
            "error",
            "rejection_reason",
            "call_id",
        )
    )
    turns = [
        _turn_row(entry, start)
        for entry in session.turn_timings
        if isinstance(entry, dict) and isinstance(entry.get("turn"), int)
    ]
    _attach_calls(turns, calls)
    reconnects = [
        _reconnect_row(entry, start) for entry in session.reconnect_log if isinstance(entry, dict)
    ]
    end = session.ended_at or (timezone.now() if session.is_live else None)
    offsets = [t.offset_s + (t.reply_ms or 0) / 1000 for t in turns if t.offset_s is not None]
    offsets += [_offset(c.finished_at or c.created_at, start) or 0.0 for c in calls]
    offsets += [r.offset_s for r in reconnects if r.offset_s is not None]
    duration = max([(end - start).total_seconds() if end else 0.0, *offsets, 1.0])
    return SessionTimeline(
        duration_s=duration,
        turns=turns,
        tool_calls=calls,
        reconnects=reconnects,
        svg=_timeline_svg(duration, turns, calls, reconnects, start),
        latency=_latency_chart(turns),
    )


def _attach_calls(turns: list[TurnRow], calls: list[ToolCallRecord]) -> None:
    """Each call goes to the turn whose speech ended last before it was asked. By time:
    a call's ``turn`` is its conversation position (``sessions.uplink``), which is not
    numbered like the timed turns."""
    timed = sorted((t for t in turns if t.at is not None), key=lambda t: t.at or _EARLIEST)
    ends = [t.at for t in timed if t.at is not None]
    for call in calls:
        index = bisect.bisect_right(ends, call.created_at) - 1
        if index >= 0:
            timed[index].tool_calls.append(call)


def _turn_row(entry: dict[str, Any], start: datetime.datetime) -> TurnRow:
    at = _when(entry.get("at"))
    return TurnRow(
        turn=entry["turn"],
        at=at,
        offset_s=_offset(at, start),
        reply_in_ms=_ms(entry.get("reply_in_ms")),
        reply_out_ms=_ms(entry.get("reply_out_ms")),
        playback_ms=_ms(entry.get("playback_ms")),
        tool_ms=_ms(entry.get("tool_ms")) or 0.0,
        reconnect_gap_ms=_ms(entry.get("reconnect_gap_ms")) or 0.0,
        outcome=str(entry.get("outcome", "")),
        speech_end_source=str(entry.get("speech_end_source", "")),
    )


def _reconnect_row(entry: dict[str, Any], start: datetime.datetime) -> ReconnectRow:
    at = _when(entry.get("at"))
    resumed, fresh = entry.get("resumed"), entry.get("fresh_context")
    return ReconnectRow(
        at=at,
        offset_s=_offset(at, start),
        cause=str(entry.get("cause", "")),
        gap_ms=_ms(entry.get("gap_ms")),
        resumed=resumed if isinstance(resumed, bool) else None,
        fresh_context=fresh if isinstance(fresh, bool) else None,
    )


def _timeline_svg(
    duration: float,
    turns: list[TurnRow],
    calls: list[ToolCallRecord],
    reconnects: list[ReconnectRow],
    start: datetime.datetime,
) -> SafeString:
    turn_marks = []
    for t in turns:
        if t.offset_s is None:
            continue
        reply = t.reply_ms
        label = f"turn {t.turn} at {t.offset_s:.1f} s: " + (
            f"reply after {reply:.0f} ms ({t.outcome})" if reply is not None else t.outcome
        )
        end = t.offset_s + reply / 1000 if reply is not None else None
        turn_marks.append(Mark(t.offset_s, end, label, OUTCOME_COLORS.get(t.outcome, GREY)))
    tool_marks = []
    for c in calls:
        begin = _offset(c.started_at or c.created_at, start)
        if begin is None:
            continue
        finish = _offset(c.finished_at, start)
        took = f", {c.duration_ms} ms" if c.duration_ms is not None else ""
        tool_marks.append(
            Mark(begin, finish, f"{c.tool_name}: {c.status}{took}", TOOL_COLORS.get(c.status, GREY))
        )
    reconnect_marks = [
        Mark(r.offset_s, None, f"reconnect ({r.cause}), gap {r.gap_ms or 0:.0f} ms", SKY)
        for r in reconnects
        if r.offset_s is not None
    ]
    return timeline(
        chart_id="session-timeline",
        title="Timeline of the call",
        description=(
            f"{len(turn_marks)} turns (each bar from the end of the user's speech to the reply "
            f"reaching the user), {len(tool_marks)} tool calls (from start to finish) and "
            f"{len(reconnect_marks)} reconnects, over {duration:.0f} s."
        ),
        duration_s=duration,
        lanes=[
            Lane("turns (reply)", turn_marks),
            Lane("tool calls", tool_marks),
            Lane("reconnects", reconnect_marks),
        ],
    )


def _latency_chart(turns: list[TurnRow]) -> Chart | None:
    shown = [t for t in turns if t.reply_in_ms is not None or t.reply_ms is not None]
    shown = shown[-CHART_TURNS:]
    if not shown:
        return None
    return bar_chart(
        chart_id="session-turn-latency",
        title="Reply latency per turn",
        description="Milliseconds from the end of the user's speech to the model's first "
        "output reaching the platform, being sent to the client, and (when the client "
        f"reports it) starting to play. The newest {CHART_TURNS} turns at most.",
        labels=[str(t.turn) for t in shown],
        series=[
            Series("model output in", [t.reply_in_ms for t in shown], SKY),
            Series("sent to client", [t.reply_out_ms for t in shown], BLUE),
            Series("heard (voice-to-voice)", [t.playback_ms for t in shown], ORANGE),
        ],
        x_label="turn",
        y_label="milliseconds",
    )


def _when(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _offset(at: datetime.datetime | None, start: datetime.datetime) -> float | None:
    return (at - start).total_seconds() if at is not None else None


def _ms(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
