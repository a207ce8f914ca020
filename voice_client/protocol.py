"""The client side of the end-user WebSocket protocol (docs/protocol.md), as pure functions.

Messages to the server are built here, server events are parsed here into small typed
objects, and every close code the server uses has its name, a message for people and
whether a client should resume after it. No I/O: the console, the tests and the load
generators share this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

INPUT_RATE = 16_000
OUTPUT_RATE = 24_000
MIN_AUDIO_BYTES = 2
MAX_AUDIO_BYTES = 32_000
LIVE_PATH = "/ws/v1/live"


class ProtocolError(ValueError):
    """A frame from the server that is not an event of the protocol."""


# --- client -> server --------------------------------------------------------------------


def _message(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"), allow_nan=False)


def text_message(text: str, *, turn_complete: bool = True) -> str:
    """A typed user turn (or part of one, with ``turn_complete=False``); ValueError for an
    empty text, which the schema and the server refuse."""
    if not text:
        raise ValueError("a text message needs some text")
    return _message("text", text=text, turn_complete=turn_complete)


def audio_end_message() -> str:
    """The microphone stopped: the server ends the spoken turn in progress."""
    return _message("audio_end")


def activity_start_message() -> str:
    return _message("activity_start")


def activity_end_message() -> str:
    return _message("activity_end")


def ping_message(ping_id: str | int | float | bool | None = None) -> str:
    """A ping; the server answers ``pong`` with the same id."""
    return _message("ping", id=ping_id)


def playback_started_message() -> str:
    """Optional: the client started playing a reply's first audio (once per reply); the
    server times voice-to-voice latency as the user hears it from it."""
    return _message("playback.started")


def close_message() -> str:
    """End the session for good (``session.ended`` ``client_closed``, close 1000)."""
    return _message("close")


def audio_frame(pcm: bytes) -> bytes:
    """A binary frame of 16 kHz PCM16 audio, checked against the server's limits."""
    if len(pcm) > MAX_AUDIO_BYTES:
        raise ValueError(f"audio frame of {len(pcm)} bytes exceeds {MAX_AUDIO_BYTES}")
    if len(pcm) < MIN_AUDIO_BYTES or len(pcm) % 2:
        raise ValueError(f"audio frame of {len(pcm)} bytes is not whole 16-bit samples")
    return bytes(pcm)


def live_url(base: str, *, token: str | None = None, resume: str | None = None) -> str:
    """The session URL for a ``ws(s)://host[:port][/path]`` base and exactly one credential.

    A base without a path gets ``/ws/v1/live``; a base that names a path keeps it (a
    deployment behind a prefix).
    """
    if (token is None) == (resume is None):
        raise ValueError("give exactly one of token and resume")
    parts = urlsplit(base)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"not a ws:// or wss:// URL: {base!r}")
    path = parts.path if parts.path not in ("", "/") else LIVE_PATH
    query = f"token={quote(token, safe='')}" if token is not None else ""
    if resume is not None:
        query = f"resume={quote(resume, safe='')}"
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def http_base(ws_url: str) -> str:
    """The REST base (``http(s)://host[:port][/prefix]``) of the server a ``ws(s)://`` URL names.

    The REST API sits under the same prefix as the session endpoint: a base without a path
    (what `live_url` completes with ``/ws/v1/live``) has none, and a path ending in
    ``/ws/v1/live`` has what comes before it (``wss://host/voice/ws/v1/live`` ->
    ``https://host/voice``). Any other path is a proxy's own route to the live endpoint,
    which says nothing of where the API is: ValueError rather than a guess that 404s.
    """
    parts = urlsplit(ws_url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"not a ws:// or wss:// URL: {ws_url!r}")
    path = parts.path.rstrip("/")
    if path and not path.endswith(LIVE_PATH):
        raise ValueError(
            f"cannot tell the REST API's address from the path {parts.path!r}: "
            f"give the URL of the endpoint, ending {LIVE_PATH}"
        )
    prefix = path.removesuffix(LIVE_PATH)
    return urlunsplit(("https" if parts.scheme == "wss" else "http", parts.netloc, prefix, "", ""))


def token_request_path(agent_id: int) -> str:
    """The REST path that mints a client token for an agent (docs/protocol.md section 1)."""
    return f"/api/v1/agents/{agent_id}/tokens/"


# --- server -> client --------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """A server event: ``type`` and the whole decoded object in ``data``."""

    type: str
    data: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class SessionStarted(Event):
    session_id: str
    resume_token: str = field(repr=False)  # a credential: kept out of reprs and logs
    agent_id: int | None
    agent_name: str
    response_modality: str
    input_rate: int
    output_rate: int


@dataclass(frozen=True)
class SessionEnded(Event):
    reason: str


@dataclass(frozen=True)
class SessionReconnecting(Event):
    reason: str


@dataclass(frozen=True)
class SessionResumed(Event):
    fresh_context: bool


@dataclass(frozen=True)
class TextEvent(Event):
    """``text`` (the model's text), ``transcript.input`` or ``transcript.output``."""

    text: str


@dataclass(frozen=True)
class ErrorEvent(Event):
    code: str
    message: str
    retry_after: int | None


@dataclass(frozen=True)
class WarningEvent(Event):
    code: str
    message: str
    recovering: bool | None  # `reply_stalled` only: whether the turn is asked again


@dataclass(frozen=True)
class Pong(Event):
    """The answer to a ``ping``: its ``id`` (None when the ping had none)."""

    id: str | int | float | bool | None


@dataclass(frozen=True)
class ToolEvent(Event):
    """``tool.started`` (``status`` empty) or ``tool.finished``."""

    call_id: str
    name: str
    status: str


@dataclass(frozen=True)
class Usage(Event):
    prompt_tokens: int
    response_tokens: int
    total_tokens: int
    context_limit: int | None


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def parse_event(raw: str | bytes) -> Event:
    """A server text frame as an event; unknown types parse as a plain ``Event``, so a
    newer server does not break an older client. ProtocolError for anything not an event."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("server sent malformed JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError("server sent a frame that is not an event object")
    kind: str = data["type"]
    if kind == "session.started":
        agent, audio = _object(data, "agent"), _object(data, "audio")
        return SessionStarted(
            kind,
            data,
            session_id=_text(data, "session_id"),
            resume_token=_text(data, "resume_token"),
            agent_id=_int(agent, "id"),
            agent_name=_text(agent, "name"),
            response_modality=_text(agent, "response_modality"),
            input_rate=_int(audio, "input_rate") or INPUT_RATE,
            output_rate=_int(audio, "output_rate") or OUTPUT_RATE,
        )
    if kind == "session.ended":
        return SessionEnded(kind, data, reason=_text(data, "reason"))
    if kind == "session.reconnecting":
        return SessionReconnecting(kind, data, reason=_text(data, "reason"))
    if kind == "session.resumed":
        return SessionResumed(kind, data, fresh_context=data.get("fresh_context") is True)
    if kind in ("text", "transcript.input", "transcript.output"):
        return TextEvent(kind, data, text=_text(data, "text"))
    if kind == "error":
        return ErrorEvent(
            kind,
            data,
            code=_text(data, "code"),
            message=_text(data, "message"),
            retry_after=_int(data, "retry_after"),
        )
    if kind == "warning":
        recovering = data.get("recovering")
        return WarningEvent(
            kind,
            data,
            code=_text(data, "code"),
            message=_text(data, "message"),
            recovering=recovering if isinstance(recovering, bool) else None,
        )
    if kind == "pong":
        ping_id = data.get("id")
        scalar = isinstance(ping_id, str | int | float | bool) or ping_id is None
        return Pong(kind, data, id=ping_id if scalar else None)
    if kind in ("tool.started", "tool.finished"):
        return ToolEvent(
            kind,
            data,
            call_id=str(data.get("call_id", "")),
            name=_text(data, "name"),
            status=_text(data, "status"),
        )
    if kind == "usage":
        return Usage(
            kind,
            data,
            prompt_tokens=_int(data, "prompt_tokens") or 0,
            response_tokens=_int(data, "response_tokens") or 0,
            total_tokens=_int(data, "total_tokens") or 0,
            context_limit=_int(data, "context_limit"),
        )
    return Event(kind, data)


# --- close codes -------------------------------------------------------------------------

# What a client sees when the connection ended without a close frame (websockets' code).
NO_CLOSE_FRAME = 1006


@dataclass(frozen=True)
class CloseCode:
    code: int
    name: str
    message: str
    # True: the session is still there; reconnect with the resume token (or, if the
    # handshake was refused, with the same token: it was not used up).
    resumable: bool = False


CLOSE_CODES: dict[int, CloseCode] = {
    c.code: c
    for c in (
        CloseCode(1000, "normal", "The session ended."),
        CloseCode(1001, "going away", "A proxy or the server went away; resuming.", resumable=True),
        CloseCode(1002, "protocol error", "The server saw a WebSocket protocol error."),
        CloseCode(
            NO_CLOSE_FRAME, "connection lost", "The connection dropped; resuming.", resumable=True
        ),
        CloseCode(1007, "invalid text", "A text frame was not valid UTF-8."),
        CloseCode(1009, "message too big", "A message was over the server's 64 KiB limit."),
        CloseCode(1012, "service restart", "The service is restarting; resuming.", resumable=True),
        CloseCode(4000, "superseded", "The session was resumed on another connection."),
        CloseCode(
            4001,
            "invalid token",
            "The token or resume token is unknown, expired, used up or revoked.",
        ),
        CloseCode(
            4003,
            "forbidden",
            "Not allowed: the origin is not allowed, the agent is disabled or the tenant "
            "is suspended.",
        ),
        CloseCode(4008, "rate limited", "Too many messages per second."),
        CloseCode(4009, "bad frame", "An audio frame was malformed or too large."),
        CloseCode(
            4011,
            "upstream unavailable",
            "The model service rejected the session or could not be reached, or the server failed.",
        ),
        CloseCode(
            4012,
            "server restarting",
            "The server process is stopping; connecting again.",
            resumable=True,
        ),
        CloseCode(
            4013,
            "busy",
            "The model service is at capacity or the platform's database is unreachable; "
            "try again later.",
        ),
        CloseCode(
            4029, "tenant session limit", "The tenant's concurrent-session limit is reached."
        ),
        CloseCode(
            4030,
            "too many failures",
            "Too many failed attempts from this address; wait before trying again.",
        ),
    )
}


def close_code(code: int | None) -> CloseCode:
    """What a close code means; ``None`` (no close frame) is a lost connection."""
    if code is None:
        code = NO_CLOSE_FRAME
    known = CLOSE_CODES.get(code)
    if known is not None:
        return known
    return CloseCode(code, "unknown", f"The connection closed with code {code}.")


def should_resume(code: int | None) -> bool:
    """Whether a client should reconnect (with its resume token) after this close."""
    return close_code(code).resumable


def describe_close(code: int | None, reason: str = "", *, refused: bool) -> str:
    """One line for people: ``refused (4001 invalid token): <message> [server: reason]``.

    ``refused`` is True when the close came before ``session.started`` (the handshake).
    """
    info = close_code(code)
    what = "refused" if refused else "session ended"
    line = f"{what} ({info.code} {info.name}): {info.message}"
    if reason:
        line += f" [server: {reason}]"
    return line
