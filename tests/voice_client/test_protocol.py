"""voice_client.protocol against the server's own parser, event builders and close codes,
and against the protocol's JSON Schema (sessions/protocol.schema.json)."""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessions import client_events
from sessions.client_messages import (
    BadMessage,
    audio_frame_problem,
    parse_client_message,
    sanitize_text,
)
from sessions.close_codes import CloseCode
from sessions.protocol_schema import client_message_problem, definitions_of, protocol_schema
from tests.sessions.conftest import assert_protocol
from voice_client import protocol
from voice_platform.daphne_options import VIOLATION_CODES


@given(st.text(min_size=1).filter(lambda t: t.strip()), st.booleans())
def test_text_messages_are_what_the_server_parses(text, turn_complete):
    raw = protocol.text_message(text, turn_complete=turn_complete)
    try:
        parsed = parse_client_message(raw)
    except BadMessage:  # only a text that sanitising empties (control characters only)
        assert not sanitize_text(text).strip()
        return
    assert parsed.type == "text"
    assert parsed.turn_complete is turn_complete


@pytest.mark.parametrize(
    ("build", "kind"),
    [(protocol.audio_end_message, "audio_end"),
     (protocol.activity_start_message, "activity_start"),
     (protocol.activity_end_message, "activity_end"),
     (protocol.close_message, "close"),
     (protocol.ping_message, "ping")],
)  # fmt: skip
def test_control_messages_are_what_the_server_parses(build, kind):
    assert parse_client_message(build()).type == kind


def test_a_ping_id_comes_back():
    assert parse_client_message(protocol.ping_message("p-7")).ping_id == "p-7"


@given(st.integers(min_value=0, max_value=40_000))
def test_audio_frames_are_refused_exactly_where_the_server_refuses_them(length):
    data = bytes(length)
    problem = audio_frame_problem(data)
    if problem is None:
        assert protocol.audio_frame(data) == data
    else:
        with pytest.raises(ValueError, match="bytes"):
            protocol.audio_frame(data)


def test_every_close_code_the_server_sends_has_a_name_and_a_message():
    server_codes = {int(code) for code in CloseCode} | set(VIOLATION_CODES)
    for code in server_codes:
        meaning = protocol.close_code(code)
        assert meaning.name != "unknown", code
        assert meaning.message.endswith("."), code
    assert protocol.close_code(4999).name == "unknown"


@pytest.mark.parametrize(
    ("code", "resume"),
    [(None, True), (1006, True), (4012, True), (1000, False), (4000, False), (4001, False),
     (4003, False), (4008, False), (4009, False), (4011, False), (4013, False),
     (4029, False), (4030, False), (1002, False), (1007, False), (1009, False)],
)  # fmt: skip
def test_which_closes_are_worth_a_resume(code, resume):
    assert protocol.should_resume(code) is resume


def test_a_refusal_line_has_the_code_its_name_the_message_and_the_servers_reason():
    line = protocol.describe_close(4001, "invalid_token", refused=True)
    assert line.startswith("refused (4001 invalid token): ")
    assert protocol.close_code(4001).message in line
    assert line.endswith("[server: invalid_token]")
    assert protocol.describe_close(4011, "", refused=False).startswith(
        "session ended (4011 upstream unavailable): "
    )


def test_server_events_parse_into_typed_objects():
    started = protocol.parse_event(
        json.dumps(
            client_events.session_started(
                session_id="s-1", resume_token="rt_secret", agent_id=3, agent_name="A",
                modality="AUDIO",
            )
        )
    )  # fmt: skip
    assert isinstance(started, protocol.SessionStarted)
    assert (started.session_id, started.agent_id, started.response_modality) == ("s-1", 3, "AUDIO")
    assert (started.input_rate, started.output_rate) == (16000, 24000)
    assert started.resume_token == "rt_secret"
    assert "rt_secret" not in repr(started)

    busy = protocol.parse_event(json.dumps(client_events.busy(retry_after=12)))
    assert isinstance(busy, protocol.ErrorEvent)
    assert (busy.code, busy.retry_after) == ("busy", 12)
    ended = protocol.parse_event(json.dumps(client_events.session_ended("server_restart")))
    assert isinstance(ended, protocol.SessionEnded)
    assert ended.reason == "server_restart"
    said = protocol.parse_event(json.dumps(client_events.simple("transcript.input", text="hi")))
    assert isinstance(said, protocol.TextEvent)
    assert said.text == "hi"
    stalled = protocol.parse_event(
        json.dumps(client_events.warning("reply_stalled", "no reply", recovering=True))
    )
    assert isinstance(stalled, protocol.WarningEvent)
    assert stalled.data["recovering"] is True
    tool = protocol.parse_event(
        json.dumps({"type": "tool.finished", "call_id": "c1", "name": "t", "status": "ok"})
    )
    assert isinstance(tool, protocol.ToolEvent)
    assert tool.status == "ok"
    newer = protocol.parse_event('{"type": "something.new", "x": 1}')
    assert type(newer) is protocol.Event
    assert newer.data["x"] == 1


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '{"no": "type"}', '{"type": 7}'])
def test_a_frame_that_is_not_an_event_is_a_protocol_error(raw):
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_event(raw)


def test_urls():
    assert (
        protocol.live_url("ws://127.0.0.1:8000", token="ct_a/b+c")
        == "ws://127.0.0.1:8000/ws/v1/live?token=ct_a%2Fb%2Bc"
    )
    assert (
        protocol.live_url("wss://voice.example/prefix/live", resume="rt_x")
        == "wss://voice.example/prefix/live?resume=rt_x"
    )
    assert protocol.http_base("ws://127.0.0.1:8000") == "http://127.0.0.1:8000"
    assert protocol.http_base("ws://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert protocol.http_base("wss://voice.example:8443/ws/v1/live") == "https://voice.example:8443"
    with pytest.raises(ValueError, match="REST API"):  # a proxy's own route: no guess
        protocol.http_base("wss://voice.example/prefix/live")
    with pytest.raises(ValueError, match="ws://"):
        protocol.live_url("http://voice.example", token="t")
    with pytest.raises(ValueError, match="exactly one"):
        protocol.live_url("ws://voice.example", token="t", resume="r")


@pytest.mark.parametrize("prefix", ["/voice", "/a/b"])
def test_the_rest_api_is_under_the_same_prefix_as_the_live_endpoint(prefix):
    live = protocol.live_url(f"wss://host.example{prefix}/ws/v1/live", token="ct_t")
    assert live == f"wss://host.example{prefix}/ws/v1/live?token=ct_t"
    for url in (
        f"wss://host.example{prefix}/ws/v1/live",
        f"wss://host.example{prefix}/ws/v1/live/",
    ):
        assert protocol.http_base(url) == f"https://host.example{prefix}"


# --- the JSON Schema -----------------------------------------------------------------------


def builders() -> dict[str, Callable[..., str]]:
    """Every public ``*_message`` function of voice_client.protocol (found, not listed)."""
    return {
        name: function
        for name, function in inspect.getmembers(protocol, inspect.isfunction)
        if name.endswith("_message") and not name.startswith("_")
    }


# Arguments for the builders that need some; a new builder with required arguments fails
# the tests below until it has an entry here.
BUILDER_ARGS: dict[str, tuple[Any, ...]] = {"text_message": ("hello",)}


def test_there_is_a_builder_for_every_client_message_the_schema_defines():
    built = {
        json.loads(build(*BUILDER_ARGS.get(name, ())))["type"] for name, build in builders().items()
    }
    assert built == set(definitions_of("clientMessage"))


@pytest.mark.parametrize("name", sorted(builders()))
def test_every_builder_makes_a_client_message_valid_under_the_schema(name):
    frame = json.loads(builders()[name](*BUILDER_ARGS.get(name, ())))
    assert_protocol(frame, "clientMessage")
    assert client_message_problem(frame) is None  # and the server's own check agrees


@given(st.text(), st.booleans())
def test_any_text_message_is_valid_under_the_schema_or_refused_by_the_builder(text, complete):
    try:
        raw = protocol.text_message(text, turn_complete=complete)
    except ValueError:
        assert text == ""
        return
    assert_protocol(json.loads(raw), "clientMessage")


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)


@given(scalars)
def test_any_ping_id_makes_a_ping_valid_under_the_schema_and_its_pong_parses(ping_id):
    assert_protocol(json.loads(protocol.ping_message(ping_id)), "clientMessage")
    pong = protocol.parse_event(json.dumps({"type": "pong", "id": ping_id}))
    assert isinstance(pong, protocol.Pong)
    assert pong.id == ping_id


# Events of every serverEvent type, each field of its definition set in one of them at
# least (the first test checks both against the schema). Values are arbitrary but valid.
SERVER_EVENT_SAMPLES: list[dict[str, Any]] = [
    {"type": "session.started", "session_id": "0b7d4d7e-4a0e-4c55-8a43-2f7c2b3c9d10",
     "resume_token": "rt_sample",
     "agent": {"id": 7, "name": "Support", "response_modality": "TEXT"},
     "audio": {"input_rate": 16000, "output_rate": 24000}},
    {"type": "text", "text": "Hello"},
    {"type": "transcript.input", "text": "what time"},
    {"type": "transcript.output", "text": "It is noon"},
    {"type": "interrupted"},
    {"type": "turn_complete"},
    {"type": "usage", "prompt_tokens": 12, "response_tokens": 4, "total_tokens": 16,
     "context_limit": 128000},
    {"type": "tool.started", "call_id": "c-1", "name": "lookup_order"},
    {"type": "tool.finished", "call_id": "c-1", "name": "lookup_order", "status": "timeout"},
    {"type": "warning", "code": "session_near_limit", "message": "60 s left"},
    {"type": "warning", "code": "reply_stalled", "message": "asking again", "recovering": False},
    {"type": "session.reconnecting", "reason": "go_away"},
    {"type": "session.resumed", "fresh_context": True},
    {"type": "pong", "id": "p-1"},
    {"type": "pong", "id": None},
    {"type": "error", "code": "bad_message", "message": "not JSON"},
    {"type": "error", "code": "unavailable", "message": "try later", "retry_after": 5},
    {"type": "session.ended", "reason": "max_duration"},
]  # fmt: skip


def test_the_samples_cover_every_server_event_and_field_the_schema_defines():
    defs = protocol_schema()["$defs"]
    for sample in SERVER_EVENT_SAMPLES:
        assert_protocol(sample, "serverEvent")
    for kind, name in definitions_of("serverEvent").items():
        used = {key for sample in SERVER_EVENT_SAMPLES if sample["type"] == kind for key in sample}
        assert used == set(defs[name]["properties"]), kind


def leaves(
    data: dict[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from leaves(value, (*path, key))
        else:
            yield (*path, key), value


@pytest.mark.parametrize("sample", SERVER_EVENT_SAMPLES, ids=lambda s: s["type"])
def test_parse_event_exposes_every_field_of_every_server_event(sample):
    """Each field (a nested one as ``agent_id``, or by its own name as ``input_rate``) is an
    attribute of the parsed event holding the same value, of the same type."""
    event = protocol.parse_event(json.dumps(sample))
    assert event.type == sample["type"]
    assert event.data == sample
    fields = {f.name for f in dataclasses.fields(event)} - {"type", "data"}
    for path, value in leaves(sample):
        if path == ("type",):
            continue
        names = [name for name in ("_".join(path), path[-1]) if name in fields]
        assert names, f"{sample['type']}: {'.'.join(path)} is not exposed"
        got = getattr(event, names[0])
        assert (type(got), got) == (type(value), value), f"{sample['type']}: {'.'.join(path)}"
