"""Client -> server text frames: parsed, checked against the protocol schema
(sessions/protocol.schema.json) and turned into typed messages, or an error."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sessions.protocol_schema import client_message_problem, client_validators

MAX_TEXT_CHARS = 10_000
MIN_AUDIO_BYTES = 2
MAX_AUDIO_BYTES = 32_000
# Control characters except \t and \n (C0, DEL, C1): removed before text goes upstream.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# A lone UTF-16 surrogate (JSON allows "\ud800" escapes) is not a character: no UTF-8 text,
# so neither PostgreSQL nor the model service can take it. It becomes U+FFFD.
_SURROGATE = re.compile("[\ud800-\udfff]")
# At import, not at a session's first message: a missing or broken schema file stops the
# server at start-up instead of failing sessions.
client_validators()


class BadMessage(Exception):
    """A message the session survives: answered with an ``error`` event (bad_message)."""


@dataclass(frozen=True)
class ClientMessage:
    type: str
    text: str = ""
    turn_complete: bool = True
    ping_id: Any = None


def sanitize_text(text: str) -> str:
    """What a user's text may carry upstream and into the transcript."""
    return storable_text(_CONTROL.sub("", text))[:MAX_TEXT_CHARS]


def storable_text(text: str) -> str:
    """``text`` with what PostgreSQL cannot store replaced: NUL removed, lone surrogates
    (JSON's unpaired ``\\udXXX`` escapes) turned into U+FFFD."""
    return _SURROGATE.sub("\ufffd", text.replace("\x00", ""))


def audio_frame_problem(data: bytes) -> str | None:
    """Why a binary frame is not acceptable audio, or None."""
    if len(data) > MAX_AUDIO_BYTES:
        return f"audio frame of {len(data)} bytes exceeds {MAX_AUDIO_BYTES}"
    if len(data) < MIN_AUDIO_BYTES or len(data) % 2:
        return f"audio frame of {len(data)} bytes is not whole 16-bit samples"
    return None


def _no_constants(name: str) -> Any:
    # Python's json takes NaN and Infinity, which are not JSON: a ping's id is echoed in
    # its pong, and a browser's JSON.parse would fail on it.
    raise ValueError(f"{name} is not JSON")


def parse_client_message(raw: str) -> ClientMessage:
    """A text frame as a message, checked against the protocol schema, its text sanitised."""
    try:
        data = json.loads(raw, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise BadMessage("malformed JSON") from exc
    problem = client_message_problem(data)
    if problem is not None:
        raise BadMessage(problem)
    kind = data["type"]
    if kind == "text":
        # Sanitising is no schema rule: the cut keeps a long turn, the rest makes it storable.
        clean = sanitize_text(data["text"])
        if not clean.strip():
            raise BadMessage("'text' is empty")
        return ClientMessage(type="text", text=clean, turn_complete=data.get("turn_complete", True))
    if kind == "ping":
        return ClientMessage(type="ping", ping_id=data.get("id"))
    return ClientMessage(type=kind)
