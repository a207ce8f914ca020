"""The emulator's plain HTTPS endpoints: ephemeral tokens and a health check.

websockets' HTTP parser refuses request bodies, so `BodyAwareConnection` takes the body
off a request before the parser sees it; `process_request` then answers from it.
"""

from __future__ import annotations

import http
import json
import re
from typing import Any
from urllib.parse import parse_qs

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from voice_platform.live_emulator.config import EmulatorConfig
from voice_platform.live_emulator.protocol import REASON_BAD_KEY, REASON_KEY_EXPIRED
from voice_platform.live_emulator.tokens import TokenRequestError, TokenStore

TOKENS_PATH = re.compile(r"^/+(?:.*/)?(v1alpha|v1beta|v1)/auth_tokens/*$")
HEALTH_PATH = re.compile(r"^/+healthz/*$")
_MAX_HEAD = 64 * 1024


class BodyAwareConnection(ServerConnection):
    """Strips `Content-Length` and the body from a request and keeps the body aside."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head: bytearray | None = bytearray()
        self.http_body = b""

    def data_received(self, data: bytes) -> None:
        if self._head is None:
            super().data_received(data)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _MAX_HEAD:
                self._flush(bytes(self._head))
            return
        lines = bytes(self._head[:end]).split(b"\r\n")
        rest = bytes(self._head[end + 4 :])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and value.strip().isdigit():
                length = int(value.strip())
        if length == 0:
            self._flush(bytes(self._head))
            return
        if len(rest) < length:
            return  # wait for the whole body
        self.http_body = rest[:length]
        kept = [ln for ln in lines if not ln.lower().startswith(b"content-length:")]
        self._flush(b"\r\n".join(kept) + b"\r\n\r\n" + rest[length:])

    def _flush(self, data: bytes) -> None:
        self._head = None
        super().data_received(data)


def json_response(connection: ServerConnection, status: int, payload: dict[str, Any]) -> Response:
    response = connection.respond(http.HTTPStatus(status), json.dumps(payload))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json; charset=UTF-8"
    return response


def error_response(connection: ServerConnection, status: int, message: str) -> Response:
    """Google's REST error shape, which the SDK turns into ClientError/ServerError."""
    return json_response(
        connection,
        status,
        {"error": {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "")}},
    )


_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
}


def handle_http(
    connection: ServerConnection,
    request: Request,
    *,
    config: EmulatorConfig,
    tokens: TokenStore,
) -> Response:
    """Answer a request that is not a WebSocket upgrade."""
    # Not urlsplit: it reads a `//ws/...` path (the SDK's default base URL) as a host.
    path, _, query = request.path.partition("?")
    if HEALTH_PATH.match(path) and request.method == "GET":
        return json_response(connection, 200, {"status": "ok"})
    if not TOKENS_PATH.match(path):
        return error_response(connection, 404, "Not found.")
    if request.method != "POST":
        return error_response(connection, 405, "Method not allowed.")
    key = request.headers.get("x-goog-api-key") or parse_qs(query).get("key", [None])[0]
    if key and key in config.expired_api_keys:
        return error_response(connection, 400, REASON_KEY_EXPIRED)  # gemini-cli#4430
    if not key or (config.api_keys and key not in config.api_keys):
        return error_response(connection, 400, REASON_BAD_KEY)
    if key.startswith("auth_tokens/"):
        return error_response(connection, 403, "Ephemeral tokens cannot create tokens.")
    raw = getattr(connection, "http_body", b"")
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return error_response(connection, 400, "Invalid JSON payload received.")
    if not isinstance(body, dict):
        return error_response(connection, 400, "Invalid JSON payload received.")
    try:
        token = tokens.create(body, config.clock())
    except TokenRequestError as exc:
        return error_response(connection, 400, str(exc))
    return json_response(connection, 200, token.as_json())
