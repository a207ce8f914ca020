"""The session page's timeline: that session's turns, tool calls and reconnects only."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.utils import timezone

from analytics.svg_charts import Series, bar_chart, nice_ceiling
from sessions.models import VoiceSession
from tests.factories import ToolCallRecordFactory
from tests.helpers import logged_in
from tools.models import ToolCallRecord

pytestmark = pytest.mark.django_db


def change_url(session: VoiceSession) -> str:
    return f"/admin/voice_sessions/voicesession/{session.pk}/change/"


def timed_session(world: Any, agent: Any, **fields: Any) -> VoiceSession:
    start = timezone.now() - datetime.timedelta(minutes=5)
    session = VoiceSession.unscoped.create(
        tenant=world.tenant, agent=agent, end_user_id="u", status="ended", **fields
    )
    VoiceSession.unscoped.filter(pk=session.pk).update(
        started_at=start, ended_at=start + datetime.timedelta(seconds=90)
    )
    session.refresh_from_db()
    return session


def turn(n: int, start: datetime.datetime, second: float, **figures: Any) -> dict[str, Any]:
    at = (start + datetime.timedelta(seconds=second)).isoformat()
    return {"turn": n, "at": at, "speech_end_source": "activity_end", "tool_ms": 0.0,
            "reconnect_gap_ms": 0.0, "audio": True, "outcome": "complete", **figures}  # fmt: skip


def call(session: VoiceSession, **fields: Any) -> Any:
    """A tool call asked ``second`` seconds into the call (created_at is auto_now_add: set
    as given for the one insert, the way the audit trigger allows)."""
    started = session.started_at + datetime.timedelta(seconds=fields.pop("second", 10))
    created = ToolCallRecord._meta.get_field("created_at")
    created.auto_now_add = False  # type: ignore[attr-defined]
    try:
        return ToolCallRecordFactory(
            tenant_id=session.tenant_id, agent=session.agent, session=session,
            session_ref=session.pk, created_at=started, started_at=started,
            finished_at=started + datetime.timedelta(milliseconds=fields.get("duration_ms") or 0),
            **fields,
        )  # fmt: skip
    finally:
        created.auto_now_add = True  # type: ignore[attr-defined]


def test_timeline_shows_this_sessions_turns_tool_calls_and_reconnects(
    alice, charlie, alice_agent, charlie_agent, alice_staff
):
    session = timed_session(alice, alice_agent)
    start = session.started_at
    session.turn_timings = [
        turn(1, start, 4.0, reply_in_ms=310.0, reply_out_ms=322.5, playback_ms=401.0),
        turn(2, start, 20.0, reply_in_ms=2210.0, reply_out_ms=2230.0, tool_ms=1875.0),
        turn(3, start, 41.0, reply_in_ms=None, outcome="unanswered", reconnect_gap_ms=950.0),
    ]
    session.reconnect_log = [
        {"at": (start + datetime.timedelta(seconds=42)).isoformat(), "cause": "going_away",
         "gap_ms": 950, "fresh_context": False, "resumed": True},
    ]  # fmt: skip
    session.save(update_fields=["turn_timings", "reconnect_log"])
    call(session, call_id="call-lookup", tool_name="lookup_record", turn=2, duration_ms=1800,
         second=20.2)  # fmt: skip
    call(session, call_id="call-mail", tool_name="send_email", turn=2, status="failed",
         duration_ms=40, error="recipient not allowed", second=22)  # fmt: skip
    other = timed_session(alice, alice_agent)
    call(other, call_id="call-other-session")
    foreign = timed_session(charlie, charlie_agent)
    call(foreign, call_id="call-charlie")
    # A forged row naming Alice's session under Charlie's tenant: the query is tenant-bound.
    ToolCallRecordFactory(tenant=charlie.tenant, agent=charlie_agent, session=session,
                          call_id="call-forged")  # fmt: skip

    response = logged_in(alice_staff).get(change_url(session))

    assert response.status_code == 200
    timeline = response.context["timeline"]
    assert [t.turn for t in timeline.turns] == [1, 2, 3]
    assert [t.reply_ms for t in timeline.turns] == [401.0, 2230.0, None]
    assert [c.call_id for c in timeline.tool_calls] == ["call-lookup", "call-mail"]
    assert [c.call_id for c in timeline.turns[1].tool_calls] == ["call-lookup", "call-mail"]
    assert [(r.cause, r.gap_ms, r.offset_s) for r in timeline.reconnects] == [
        ("going_away", 950.0, 42.0)
    ]
    assert timeline.duration_s == 90.0
    html = response.text
    assert '<svg class="vp-chart" id="session-timeline"' in html
    assert "turn 2 at 20.0 s: reply after 2230 ms (complete)" in html
    assert "lookup_record: succeeded, 1800 ms" in html
    assert "recipient not allowed" in html
    assert "reconnect (going_away), gap 950 ms" in html
    for absent in ("call-other-session", "call-charlie", "call-forged"):
        assert absent not in html
    latency = {row[0]: row[1:] for row in timeline.latency.rows}
    assert latency == {"1": ["310", "322", "401"], "2": ["2,210", "2,230", "\u2013"]}


def test_timeline_of_another_tenants_session_is_not_shown(
    alice, charlie, charlie_agent, alice_staff
):
    foreign = timed_session(charlie, charlie_agent)
    foreign.turn_timings = [turn(1, foreign.started_at, 1.0, reply_out_ms=999.0)]
    foreign.save(update_fields=["turn_timings"])

    response = logged_in(alice_staff).get(change_url(foreign))

    assert response.status_code == 302  # the admin's answer for an object it cannot find
    assert "timeline" not in (response.context or {})


def test_timeline_survives_odd_stored_entries(alice, alice_agent, alice_staff):
    session = timed_session(alice, alice_agent)
    session.turn_timings = [
        "not a dict", {"turn": "2"}, {"turn": 3, "at": "yesterday", "reply_out_ms": "fast"},
        {"turn": 4, "at": None, "reply_out_ms": True, "outcome": None},
    ]  # fmt: skip
    session.reconnect_log = [{"at": 17, "gap_ms": None}, [], {"cause": "<b>x</b>"}]
    session.save(update_fields=["turn_timings", "reconnect_log"])

    response = logged_in(alice_staff).get(change_url(session))

    assert response.status_code == 200
    assert [t.turn for t in response.context["timeline"].turns] == [3, 4]
    assert len(response.context["timeline"].reconnects) == 2
    assert "<b>x</b>" not in response.text
    assert "&lt;b&gt;x&lt;/b&gt;" in response.text


def test_svg_charts_escape_labels_and_pick_round_scales():
    chart = bar_chart(
        chart_id="c", title="T <i>", description="d", labels=["<script>"],
        series=[Series("s&s", [3])], x_label="x", y_label="y",
    )  # fmt: skip

    assert "<script>" not in chart.svg
    assert "&lt;script&gt;" in chart.svg
    assert "s&amp;s" in chart.svg
    assert chart.rows == [["<script>", "3"]]  # the template escapes table cells
    assert [nice_ceiling(v) for v in (0, 0.3, 7, 12, 240, 2600)] == [1, 0.5, 10, 20, 250, 5000]
