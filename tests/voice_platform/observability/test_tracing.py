"""Traces of real sessions through the emulator: session -> turn -> tool spans, exported to
an in-memory exporter through ``tracing_setup``'s test seam, and no user content unless
TRACING_INCLUDE_CONTENT allows it."""

from __future__ import annotations

import json

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.sessions import conftest as session_fixtures
from tests.sessions.test_bridge_tools import agent_with, call, close, records, started_client
from voice_platform.observability import tracing_setup

# The live-session fixtures of tests/sessions, for the sessions these tests drive.
live_settings = session_fixtures.live_settings
no_leaked_tasks = session_fixtures.no_leaked_tasks

pytestmark = pytest.mark.django_db(transaction=True)

GREETING = "hello there, my name is Zebulon"
TOOL_LINE = 'call get_current_time {"timezone": "Pacific/Chatham"}'


@pytest.fixture
def exported(live_settings):
    """The spans this test's sessions export (tracing on, content off unless changed)."""
    live_settings.TRACING_ENABLED = True
    live_settings.TRACING_INCLUDE_CONTENT = False
    exporter = InMemorySpanExporter()
    with tracing_setup.exporting_to(exporter):
        yield exporter


@pytest.fixture
def tools_inprocess(live_settings):
    """Tool rows synced, run in a thread of this process: no worker to start (the trace
    does not depend on where the tool runs)."""
    from tools.services import tool_sync_registry

    tool_sync_registry()
    live_settings.TOOL_EXECUTION = "inprocess"


async def two_turns_and_a_tool(alice):
    """A session: a greeting, then a turn that calls a tool. Returns (session id, the
    client, the tool call's record)."""
    agent = await agent_with(alice.tenant, {"get_current_time": {}})
    client = await started_client(agent)
    session_id = client.of("session.started")[0]["session_id"]
    await call(client, GREETING)
    await client.until("turn_complete")
    await call(client, TOOL_LINE)
    assert (await client.until("tool.finished"))["status"] == "ok"
    await client.until("turn_complete")
    await close(client)
    (record,) = await records()
    return session_id, client, record, agent


def by_name(spans):
    found = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


def every_value(span) -> str:
    """Everything a span carries besides its name, as one string to search."""
    values = [str(v) for v in span.attributes.values()]
    for event in span.events:
        values += [event.name, *(str(v) for v in event.attributes.values())]
    return "\n".join(values)


async def test_tracing_session_exports_session_turn_and_tool_spans(
    alice, tools_inprocess, exported
):
    session_id, client, record, agent = await two_turns_and_a_tool(alice)
    spans = by_name(exported.get_finished_spans())
    assert set(spans) == {"voice.session", "invoke_agent", "execute_tool get_current_time"}
    (session,) = spans["voice.session"]
    turns = sorted(spans["invoke_agent"], key=lambda s: s.attributes["voice.turn"])
    (tool,) = spans["execute_tool get_current_time"]

    assert session.parent is None
    assert session.resource.attributes["service.name"] == "voice-platform"
    assert dict(session.attributes) == {
        "gen_ai.provider.name": "gcp.gemini",
        "gen_ai.request.model": agent.model,
        "gen_ai.conversation.id": session_id,
        "gen_ai.agent.id": str(agent.pk),
        "voice.tenant.id": alice.tenant.pk,
        "voice.tenant.slug": "alice",
        "voice.agent.id": agent.pk,
        "voice.session.id": session_id,
        "voice.session.resumed": False,
        "voice.session.modality": "TEXT",
        "voice.session.end_reason": "client_closed",
    }

    # One trace; each turn a child of the session, the tool a child of its turn.
    assert [t.attributes["voice.turn"] for t in turns] == [1, 2]
    assert {s.context.trace_id for s in [session, *turns, tool]} == {session.context.trace_id}
    for turn in turns:
        assert turn.parent.span_id == session.context.span_id
        assert turn.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert turn.attributes["gen_ai.conversation.id"] == session_id
        assert turn.attributes["voice.turn.speech_end_source"] == "text"
        assert turn.attributes["voice.turn.outcome"] == "complete"
        assert turn.attributes["voice.turn.reply_in_ms"] >= 0
        assert (
            turn.attributes["voice.turn.reply_out_ms"] >= turn.attributes["voice.turn.reply_in_ms"]
        )
        assert session.start_time <= turn.start_time <= turn.end_time <= session.end_time
    assert tool.parent.span_id == turns[1].context.span_id
    assert turns[1].start_time <= tool.start_time <= tool.end_time <= turns[1].end_time
    assert turns[0].attributes["voice.turn.tool_ms"] == 0
    assert turns[1].attributes["voice.turn.tool_ms"] > 0

    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "get_current_time"
    assert tool.attributes["gen_ai.tool.type"] == "function"
    assert tool.attributes["voice.tool.key"] == record.idempotency_key
    assert tool.attributes["gen_ai.tool.call.id"] == record.call_id
    assert tool.attributes["voice.tool.status"] == "succeeded"
    assert tool.status.is_ok

    # No user content by default: not the words typed, the reply, nor the tool's arguments.
    reply = client.texts("text")
    assert "Zebulon" in reply  # the emulator echoed it: the model's words contain it too
    for span in [session, *turns, tool]:
        carried = every_value(span)
        for secret in ("Zebulon", "Pacific/Chatham", "timezone", "Result of", "You said"):
            assert secret not in carried, (span.name, secret)


async def test_tracing_content_is_on_turn_spans_when_allowed(
    alice, live_settings, tools_inprocess, exported
):
    live_settings.TRACING_INCLUDE_CONTENT = True
    _, client, _, _ = await two_turns_and_a_tool(alice)
    turns = sorted(
        by_name(exported.get_finished_spans())["invoke_agent"],
        key=lambda s: s.attributes["voice.turn"],
    )
    said = [json.loads(t.attributes["gen_ai.input.messages"]) for t in turns]
    assert said == [
        [{"role": "user", "parts": [{"type": "text", "content": GREETING}]}],
        [{"role": "user", "parts": [{"type": "text", "content": TOOL_LINE}]}],
    ]
    answered = json.loads(turns[0].attributes["gen_ai.output.messages"])
    assert answered[0]["role"] == "assistant"
    assert "Zebulon" in answered[0]["parts"][0]["content"]
    # Together, the turns carry every word the model sent.
    replies = "".join(
        part["content"]
        for turn in turns
        for message in json.loads(turn.attributes["gen_ai.output.messages"])
        for part in message["parts"]
    )
    assert replies.replace(" ", "") == client.texts("text").replace(" ", "")


async def test_tracing_off_exports_nothing(alice, live_settings, tools_inprocess, exported):
    live_settings.TRACING_ENABLED = False
    await two_turns_and_a_tool(alice)
    assert exported.get_finished_spans() == ()
    assert tracing_setup.session_tracer() is None
