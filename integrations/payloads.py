"""The JSON body of each event (docs/webhooks.md has an example of each).

Every body is ``{"type", "timestamp", "data"}`` (the Standard Webhooks payload form). Read
inside the event's tenant scope. A session's report and a tool call's outcome are built
from the database at the delivery's first attempt, when they are final, then frozen on the
delivery row: every retry and replay sends the same bytes' content. A session whose tool
calls still run (the caller hung up mid-call) is not final yet: its report waits for them
(``NotSettled``), at most ``tool_calls_wait()`` after the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from agents.models import Agent
from analytics.rollup import AUDIO_IN_BYTES_PER_SECOND, AUDIO_OUT_BYTES_PER_SECOND
from sessions.models import TranscriptEntry, VoiceSession
from tools.models import ToolCallRecord


class SubjectGone(Exception):
    """What the event is about no longer exists (deleted since): nothing can be sent."""


class NotSettled(Exception):
    """What the event is about is not final yet: build the body again after ``retry_in``
    (not a failed attempt: nothing was sent)."""

    def __init__(self, reason: str, retry_in: timedelta) -> None:
        super().__init__(reason)
        self.retry_in = retry_in


# How often a report waiting for its session's tool calls looks again.
UNSETTLED_RECHECK = timedelta(seconds=5)
# Past a call's timeout (at most TOOL_TIMEOUT_MAX) the stranded-call sweep finishes a call
# whose runner died, within its grace and period (tools.stranded: 30 s each): by then every
# call is final or will never be.
_STRANDED_FINISH = timedelta(seconds=60)


def tool_calls_wait() -> timedelta:
    """The longest a session's report waits for its unfinished tool calls (3 minutes with
    the default ``TOOL_TIMEOUT_MAX``), counted from the event."""
    return timedelta(seconds=float(settings.TOOL_TIMEOUT_MAX)) + _STRANDED_FINISH


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def envelope(event_type: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": event_type, "timestamp": iso(at), "data": data}


def _agent(agent: Agent | None) -> dict[str, Any] | None:
    return None if agent is None else {"id": agent.pk, "name": agent.name}


def _session(session_id: str) -> VoiceSession:
    try:
        session: VoiceSession = VoiceSession.objects.select_related("agent").get(
            pk=uuid.UUID(session_id)
        )
    except (ValueError, VoiceSession.DoesNotExist) as exc:
        raise SubjectGone(f"session {session_id} no longer exists") from exc
    return session


def session_started_data(session: VoiceSession) -> dict[str, Any]:
    return {
        "session_id": str(session.pk),
        "agent": _agent(session.agent),
        "user_id": session.end_user_id,
        "metadata": session.metadata,
        "started_at": iso(session.started_at),
    }


def tool_call_data(record: ToolCallRecord) -> dict[str, Any]:
    """A call as the REST audit shows it: arguments as stored (sensitive ones redacted at
    admission), never the pending arguments nor the full result."""
    return {
        "id": record.pk,
        "call_id": record.call_id,
        "tool_name": record.tool_name,
        "session_id": str(record.session_ref),
        "turn": record.turn,
        "is_webhook": record.is_webhook,
        "arguments": record.arguments,
        "status": record.status,
        "rejection_reason": record.rejection_reason,
        "error": record.error,
        "queued_at": iso(record.queued_at),
        "started_at": iso(record.started_at),
        "finished_at": iso(record.finished_at),
        "queue_ms": record.queue_ms,
        "duration_ms": record.duration_ms,
    }


def tool_call_finished_data(subject: str, age: timedelta) -> dict[str, Any]:
    record = ToolCallRecord.objects.filter(pk=int(subject) if subject.isdigit() else 0).first()
    if record is None:
        raise SubjectGone(f"tool call {subject} no longer exists")
    return tool_call_data(record)


def session_report(subject: str, age: timedelta) -> dict[str, Any]:
    """The post-call report: the session's final state, transcript, tool calls, usage and
    per-turn latency. ``age``: how long ago the session ended (the event's age).

    NotSettled while one of its tool calls is still queued or running (a worker finishes
    it after the caller hung up) and the event is younger than ``tool_calls_wait()``;
    past that, the report is built with those calls as they are, and says so."""
    session = _session(subject)
    calls = list(ToolCallRecord.objects.filter(session_ref=session.pk).order_by("created_at", "id"))
    unfinished = sum(1 for call in calls if call.status not in ToolCallRecord.FINISHED)
    if unfinished and age < tool_calls_wait():
        raise NotSettled(f"{unfinished} tool call(s) still queued or running", UNSETTLED_RECHECK)
    duration = (session.ended_at - session.started_at).total_seconds() if session.ended_at else None
    transcript = TranscriptEntry.objects.filter(session_id=session.pk).order_by("seq")
    return {
        **session_started_data(session),
        "status": session.status,
        "end_reason": session.end_reason,
        "ended_at": iso(session.ended_at),
        "duration_seconds": duration,
        "transcript": [
            {"seq": e.seq, "role": e.role, "kind": e.kind, "text": e.text, "at": iso(e.at)}
            for e in transcript
        ],
        "tool_calls": [tool_call_data(record) for record in calls],
        # False: the report waited its longest and some calls were still queued or running
        # (their `status` says which); a `tool.call.finished` event brings their outcome.
        "tool_calls_final": not unfinished,
        "usage": {
            "turns": session.turns,
            "interruptions": session.interruptions,
            "tool_calls": session.tool_calls,
            "errors": session.errors,
            "reconnects": session.reconnects,
            "prompt_tokens": session.prompt_tokens,
            "response_tokens": session.response_tokens,
            "total_tokens": session.total_tokens,
            "audio_in_seconds": session.client_bytes_in / AUDIO_IN_BYTES_PER_SECOND,
            "audio_out_seconds": session.model_bytes_out / AUDIO_OUT_BYTES_PER_SECOND,
            "dropped_audio_frames": session.dropped_audio_frames,
        },
        "latency": {
            "first_response_ms_p50": session.first_response_ms_p50,
            "first_response_ms_p95": session.first_response_ms_p95,
            "summary": session.timing_summary(),
            "turns": session.turn_timings,
        },
        "reconnect_log": session.reconnect_log,
    }


def session_started_payload(subject: str, age: timedelta) -> dict[str, Any]:
    return session_started_data(_session(subject))


# Payloads built at the first attempt, by event type, from the delivery's subject and age.
DEFERRED: dict[str, Callable[[str, timedelta], dict[str, Any]]] = {
    "session.started": session_started_payload,
    "session.ended": session_report,
    "tool.call.finished": tool_call_finished_data,
}
