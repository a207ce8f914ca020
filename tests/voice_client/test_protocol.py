"""voice_client.protocol against the server's own parser, event builders and close codes."""

from __future__ import annotations

import json

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
    assert protocol.http_base("wss://voice.example:8443/x") == "https://voice.example:8443"
    assert protocol.http_base("ws://127.0.0.1:8000") == "http://127.0.0.1:8000"
    with pytest.raises(ValueError, match="ws://"):
        protocol.live_url("http://voice.example", token="t")
    with pytest.raises(ValueError, match="exactly one"):
        protocol.live_url("ws://voice.example", token="t", resume="r")
