"""voice_client.tokens against a small HTTP server: where the token request goes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from voice_client.tokens import TokenRequestFailed, request_token


class Platform(BaseHTTPRequestHandler):
    """The token endpoint of a deployment behind the prefix ``/voice`` (nothing at ``/``)."""

    requests: list[tuple[str, str, dict[str, Any]]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.path, self.headers["Authorization"], body))
        if self.path == "/voice/api/v1/agents/3/tokens/":
            status, answer = 201, {"token": "ct_minted"}
        else:
            status, answer = 404, {"detail": "Not found.", "code": "not_found"}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


@pytest.fixture
def platform() -> Iterator[tuple[int, list[tuple[str, str, dict[str, Any]]]]]:
    requests: list[tuple[str, str, dict[str, Any]]] = []
    handler = type("Handler", (Platform,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], requests
    finally:
        server.shutdown()
        server.server_close()


def test_a_token_is_requested_under_the_prefix_of_the_live_endpoint(platform):
    port, requests = platform
    url = f"ws://127.0.0.1:{port}/voice/ws/v1/live"
    assert request_token(url, api_key="vp_key", agent_id=3, user_id="u-9") == "ct_minted"
    [(path, authorization, body)] = requests
    assert path == "/voice/api/v1/agents/3/tokens/"
    assert authorization == "Bearer vp_key"
    assert body == {"user_id": "u-9", "expire_seconds": 900, "uses": 1}


def test_without_the_prefix_the_same_deployment_answers_404(platform):
    port, requests = platform
    with pytest.raises(TokenRequestFailed) as failed:
        request_token(f"ws://127.0.0.1:{port}", api_key="vp_key", agent_id=3)
    assert failed.value.status == 404
    assert "Not found." in str(failed.value)
    assert [path for path, _, _ in requests] == ["/api/v1/agents/3/tokens/"]
