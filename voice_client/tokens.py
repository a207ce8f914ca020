"""Minting a client token over REST with a tenant API key (docs/protocol.md section 1).

This is what a tenant's backend does; the console does it for people testing an agent
with an API key. Blocking (urllib); call it in a thread from asyncio code.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from voice_client.protocol import http_base, token_request_path

TIMEOUT = 15.0


class TokenRequestFailed(Exception):
    """The platform refused to mint a token; ``str()`` is a one-line explanation."""

    def __init__(self, status: int | None, detail: str) -> None:
        self.status = status
        self.detail = detail
        prefix = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"token request failed ({prefix}): {detail}")


def _detail(body: bytes) -> str:
    """The API's error text: ``detail`` of ``{"detail", "code"}``, or the field errors."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip() or "no details"
    if isinstance(data, dict) and isinstance(data.get("detail"), str):
        return str(data["detail"])
    return json.dumps(data, separators=(",", ":"))[:300]


def request_token(
    ws_url: str,
    *,
    api_key: str,
    agent_id: int,
    user_id: str = "voice-agent-console",
    expire_seconds: int = 900,
) -> str:
    """A fresh one-use client token for ``agent_id`` from the server ``ws_url`` names."""
    url = http_base(ws_url) + token_request_path(agent_id)
    body = json.dumps({"user_id": user_id, "expire_seconds": expire_seconds, "uses": 1})
    request = urllib.request.Request(  # noqa: S310 (the scheme comes from http_base)
        url,
        data=body.encode(),
        method="POST",
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
            data: Any = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise TokenRequestFailed(exc.code, _detail(exc.read())) from None
    except (urllib.error.URLError, OSError) as exc:
        raise TokenRequestFailed(None, f"cannot reach {url}: {exc}") from None
    except ValueError:
        raise TokenRequestFailed(200, "the answer is not JSON") from None
    token = data.get("token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise TokenRequestFailed(200, "the answer has no token")
    return token
