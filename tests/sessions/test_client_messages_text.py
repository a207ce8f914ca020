"""Text a user sends is made storable at the edge (issue 12)."""

from __future__ import annotations

from sessions.client_messages import parse_client_message, storable_text


def test_lone_surrogates_become_replacement_characters_and_nul_goes():
    assert storable_text("a\ud800b\udfffc\x00d") == "a\ufffdb\ufffdc" + "d"
    assert storable_text("paired \U0001f600 emoji") == "paired \U0001f600 emoji"


def test_a_text_message_with_a_lone_surrogate_escape_is_accepted_and_made_storable():
    message = parse_client_message('{"type": "text", "text": "x \\ud83d y"}')
    assert message.text == "x \ufffd y"
    message.text.encode("utf-8")  # storable: no exception
