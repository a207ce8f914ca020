"""What identifies a tool call: the request the user made, not the model's call id.

After a reconnect the model is asked the user's turn again and asks for the same tool
again with a **new** call id (handles are not resumable while a call is pending, so the
resumed session is from before the turn). The key is therefore made of what stays the
same across that re-ask, on any server process:

- the session (``session_ref``);
- the conversation position of the turn the call answers (``turn``): the bridge counts
  completed model turns, and a reconnect rewinds the count to the position the resumed
  upstream is at (see ``sessions.uplink``), so a replayed turn has its first number again;
- the tool's name and its arguments in canonical JSON (sorted keys, integral floats as
  integers: the model may write ``2`` or ``2.0``);
- ``occurrence``: the how-many-th identical call (same name and arguments) of that turn
  this is, so asking twice on purpose in one turn still runs twice.

A call with the same key is the same request: it runs once, and a re-ask is answered from
the first one's outcome (or waits for it). Webhook tools send the key as their
``Idempotency-Key`` header.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def canonical_arguments(args: Mapping[str, Any]) -> str:
    return json.dumps(
        _canonical(dict(args)), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        default=str,
    )  # fmt: skip


def _canonical(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def tool_call_key(
    *, session_ref: str, turn: int, name: str, args: Mapping[str, Any], occurrence: int
) -> str:
    """The call's idempotency key: 64 hex characters."""
    material = "\x1f".join(
        (str(session_ref), str(turn), name, canonical_arguments(args), str(occurrence))
    )
    # surrogatepass: a lone surrogate (JSON allows "\ud800") still gets a key, and admission
    # refuses the call with a reason instead of failing here; other text encodes as UTF-8.
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()
