"""The audio hot path on the SDK's own WebSocket, without pydantic per frame.

The SDK builds and validates a pydantic model for every audio frame it sends
(``send_realtime_input``) and for every message it receives (``_receive``): about 37 µs and
52 µs of CPU per 100 ms frame, the largest per-frame cost of the relay. Audio frames are
the one message kind that is both frequent and trivial, so for them only:

- up: ``realtime_audio_json`` is exactly the text ``send_realtime_input(audio=...)`` sends,
  written to the SDK session's socket;
- down: ``AudioTap`` wraps that socket; a message that is nothing but one chunk of model
  audio goes to a callback as PCM bytes, every other message continues to the SDK's own
  parser unchanged, in order.

This module knows nothing of the SDK: ``sdk_adapter`` is the one place that puts the tap on
an ``AsyncSession``'s socket and writes to it, checks at start-up that the installed SDK
still works that way, and otherwise falls back to the SDK's own methods.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

AUDIO_IN_MIME = "audio/pcm;rate=16000"
_URLSAFE = str.maketrans("-_", "+/")


def realtime_audio_json(pcm: bytes) -> str:
    """``{"realtime_input": {"audio": {...}}}`` as ``json.dumps`` writes it for the SDK."""
    data = base64.urlsafe_b64encode(pcm).decode("ascii")
    return (
        f'{{"realtime_input": {{"audio": {{"data": "{data}", "mime_type": "{AUDIO_IN_MIME}"}}}}}}'
    )


def model_audio_of(raw: bytes | str) -> bytes | None:
    """The PCM of a message that holds one chunk of model audio and nothing else, or None."""
    try:
        message = json.loads(raw)
    except ValueError:
        return None  # the SDK reports it
    if not isinstance(message, dict) or len(message) != 1:
        return None
    content = message.get("serverContent")
    if not isinstance(content, dict) or len(content) != 1:
        return None
    turn = content.get("modelTurn")
    if not isinstance(turn, dict) or not set(turn) <= {"parts", "role"}:
        return None
    parts = turn.get("parts")
    if not isinstance(parts, list) or len(parts) != 1:
        return None
    part = parts[0]
    if not isinstance(part, dict) or len(part) != 1:
        return None
    inline = part.get("inlineData")
    if not isinstance(inline, dict) or not set(inline) <= {"data", "mimeType"}:
        return None
    data, mime = inline.get("data"), inline.get("mimeType")
    if not isinstance(data, str) or not data or not str(mime).startswith("audio/"):
        return None
    try:
        # Standard or URL-safe alphabet, padded or not, as the SDK's own parser accepts.
        return base64.b64decode(data.translate(_URLSAFE) + "=" * (-len(data) % 4), validate=True)
    except ValueError:
        return None  # not ours to judge: the SDK parses it


OnAudio = Callable[[bytes], Awaitable[None]]


class AudioTap:
    """The SDK session's WebSocket, with model audio taken out on the way in."""

    def __init__(self, ws: Any, on_audio: OnAudio) -> None:
        self._inner = ws
        self._on_audio = on_audio

    async def recv(self, decode: bool | None = None) -> Any:
        while True:
            raw = await self._inner.recv(decode=decode)
            pcm = model_audio_of(raw)
            if pcm is None:
                return raw
            await self._on_audio(pcm)

    def __getattr__(self, name: str) -> Any:  # send, ping, close, transport, ...
        return getattr(self._inner, name)
