"""One line of console output per server event (never a credential)."""

from __future__ import annotations

import json

from voice_client import protocol
from voice_client.session import ClientNotice

_SPOKEN = {"text": "model", "transcript.output": "model (speech)", "transcript.input": "you"}
_HIDDEN = {"type", "resume_token"}


def render(item: protocol.Event | bytes | ClientNotice, *, quiet: bool = False) -> str | None:
    """The console line for ``item``, or None when it is not printed (audio; with
    ``quiet``, everything but what is said and what the client itself does)."""
    if isinstance(item, bytes):
        return None
    if isinstance(item, ClientNotice):
        return f"client: {item.message}"
    if isinstance(item, protocol.TextEvent):
        return f"{_SPOKEN[item.type]}: {item.text}"
    if quiet:
        return None
    if isinstance(item, protocol.SessionStarted):
        return (
            f"session.started session={item.session_id} agent={item.agent_name!r} "
            f"modality={item.response_modality}"
        )
    if isinstance(item, protocol.ErrorEvent):
        after = f" (retry after {item.retry_after} s)" if item.retry_after is not None else ""
        return f"error {item.code}: {item.message}{after}"
    if isinstance(item, protocol.WarningEvent):
        return f"warning {item.code}: {item.message}"
    fields = {key: value for key, value in item.data.items() if key not in _HIDDEN}
    if not fields:
        return item.type
    return f"{item.type} {json.dumps(fields, separators=(',', ':'), ensure_ascii=False)}"
