"""``SessionTrace`` on its own: what happens to spans the bridge leaves open, tools outside a
turn, reconnects, failures, and spans started while another span is current."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from sessions.turn_timing import TurnTiming
from voice_platform.observability import tracing, tracing_setup
from voice_platform.observability.labels import SessionLabels

LABELS = SessionLabels(
    tenant_id=7, tenant_slug="acme", agent_id=3, session_id="s-1", model="m-1", modality="AUDIO"
)


@pytest.fixture
def exported(settings):
    settings.TRACING_ENABLED = True
    settings.TRACING_INCLUDE_CONTENT = False
    exporter = InMemorySpanExporter()
    with tracing_setup.exporting_to(exporter):
        yield exporter


def spans_by_name(exporter):
    return {span.name: span for span in exporter.get_finished_spans()}


def test_tracing_open_turn_and_tool_are_ended_with_the_session(exported):
    trace = tracing.session_trace(LABELS, resumed=True)
    trace.turn_started(4)
    trace.tool_started("k1", "lookup_record", "call-1")
    assert exported.get_finished_spans() == ()  # nothing ends before its time
    trace.end(reason="detached")
    trace.end(reason="again")  # a second end changes nothing
    spans = spans_by_name(exported)
    session, turn, tool = (
        spans["voice.session"],
        spans["invoke_agent"],
        spans["execute_tool lookup_record"],
    )
    assert len(exported.get_finished_spans()) == 3
    assert turn.parent.span_id == session.context.span_id
    assert tool.parent.span_id == turn.context.span_id
    assert turn.attributes["voice.turn"] == 4
    assert turn.attributes["voice.turn.outcome"] == "unfinished"
    assert tool.attributes["voice.tool.status"] == "unsettled"
    assert tool.attributes["gen_ai.tool.call.id"] == "call-1"
    assert session.attributes["voice.session.resumed"] is True
    assert session.attributes["voice.session.end_reason"] == "detached"
    assert tool.end_time <= turn.end_time <= session.end_time
    trace.turn_started(5)  # after the end: ignored
    assert len(exported.get_finished_spans()) == 3


def test_tracing_tool_outside_a_turn_is_a_child_of_the_session(exported):
    trace = tracing.session_trace(LABELS, resumed=False)
    trace.turn_started(1)
    trace.turn_finished(TurnTiming(turn=1, at="t", speech_end_source="vad", reply_in_ms=420.5))
    trace.tool_started("k2", "send_email")
    trace.tool_finished("k2", status="failed")
    trace.end(reason="client_closed", failed=True)
    spans = spans_by_name(exported)
    session, tool, turn = (
        spans["voice.session"],
        spans["execute_tool send_email"],
        spans["invoke_agent"],
    )
    assert tool.parent.span_id == session.context.span_id
    assert tool.attributes["gen_ai.tool.call.id"] == "k2"  # no call id reported: the key
    assert tool.attributes["error.type"] == "failed"
    assert tool.status.status_code is StatusCode.ERROR
    assert session.status.status_code is StatusCode.ERROR
    assert turn.attributes["voice.turn.reply_in_ms"] == 420.5
    assert turn.attributes["voice.turn.speech_end_source"] == "vad"
    assert "voice.turn.playback_ms" not in turn.attributes  # None figures are left out


def test_tracing_parents_are_explicit_not_the_current_span(exported):
    trace = tracing.session_trace(LABELS, resumed=False)
    tracer = tracing_setup.session_tracer()
    with tracer.start_as_current_span("unrelated"):  # another task's span is current
        trace.turn_started(1)
        trace.tool_started("k3", "get_current_time")
    trace.tool_finished("k3", status="succeeded")
    trace.end(reason="client_closed")
    spans = spans_by_name(exported)
    session = spans["voice.session"]
    assert session.parent is None
    assert spans["invoke_agent"].parent.span_id == session.context.span_id
    assert spans["execute_tool get_current_time"].parent.span_id == (
        spans["invoke_agent"].context.span_id
    )


def test_tracing_reconnects_are_session_events(exported):
    trace = tracing.session_trace(LABELS, resumed=False)
    trace.reconnected(cause="goaway", gap_seconds=0.25)
    trace.reconnected(cause="network", gap_seconds=None)
    trace.end(reason="upstream_lost")
    (session,) = exported.get_finished_spans()
    assert [(e.name, dict(e.attributes)) for e in session.events] == [
        ("voice.reconnect", {"voice.reconnect.cause": "goaway",
                             "voice.reconnect.recovered": True, "voice.reconnect.gap_ms": 250.0}),
        ("voice.reconnect", {"voice.reconnect.cause": "network",
                             "voice.reconnect.recovered": False}),
    ]  # fmt: skip


def test_tracing_words_without_an_open_turn(exported, settings):
    settings.TRACING_INCLUDE_CONTENT = True
    trace = tracing.session_trace(LABELS, resumed=False)
    trace.turn_words("model", "late words")  # no turn: the session's
    trace.turn_words("user", "typed first")  # held for the turn it opens
    trace.turn_started(1)
    trace.turn_words("user", "more")
    trace.end(reason="client_closed")
    spans = spans_by_name(exported)
    assert spans["invoke_agent"].attributes["gen_ai.input.messages"] == (
        '[{"role": "user", "parts": [{"type": "text", "content": "typed first"}, '
        '{"type": "text", "content": "more"}]}]'
    )
    (event,) = spans["voice.session"].events
    assert event.name == "voice.words"
    assert "late words" in event.attributes["gen_ai.output.messages"]


def test_tracing_off_gives_the_no_op_trace(settings):
    settings.TRACING_ENABLED = False
    exporter = InMemorySpanExporter()
    with tracing_setup.exporting_to(exporter):
        trace = tracing.session_trace(LABELS, resumed=False)
        assert type(trace) is tracing.SessionTrace
        trace.turn_started(1)
        trace.tool_started("k", "t")
        trace.end(reason="client_closed")
        assert tracing_setup.session_tracer() is None
    assert exporter.get_finished_spans() == ()
