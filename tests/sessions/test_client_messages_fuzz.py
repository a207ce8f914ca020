"""Property tests of the client message parser: every text frame is a message or a
``bad_message``, and what it lets through can be stored and sent back as JSON."""

from __future__ import annotations

import json

from hypothesis import given, settings

from sessions.client_messages import MAX_TEXT_CHARS, BadMessage, parse_client_message
from tests.sessions.ws_strategies import text_frames, valid_messages


def storable(text: str) -> bool:
    """What PostgreSQL's text type and a UTF-8 JSON encoder both take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


@settings(max_examples=1500, derandomize=True, deadline=None)
@given(text_frames)
def test_it_answers_every_text_frame_with_a_message_or_a_bad_message(raw):
    try:
        message = parse_client_message(raw)
    except BadMessage:
        return
    assert message.type in {"text", "ping", "audio_end", "activity_start", "activity_end",
                            "close"}  # fmt: skip
    assert storable(message.text)
    assert len(message.text) <= MAX_TEXT_CHARS
    # A pong echoes the ping's id: it must be JSON a browser can parse (no NaN, Infinity).
    json.dumps({"id": message.ping_id}, allow_nan=False)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(valid_messages(closing=True))
def test_it_accepts_every_valid_message(message):
    parsed = parse_client_message(json.dumps(message))
    assert parsed.type == message["type"]
