"""A tenant's own web site for widget tests: a page with the admin's snippet, and the
backend endpoint that gets a client token with the tenant's API key (the minimal backend
of docs/clients.md#widget, in the standard library), CSRF-protected as Django does it: the
page sets a `csrftoken` cookie and the POST must carry it back in `X-CSRFToken`."""

from __future__ import annotations

import json
import secrets
import threading
import urllib.error
import urllib.request
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>A tenant's shop</title></head>
<body><h1>Welcome to the shop</h1><p>Questions? Talk to our assistant:</p>
{snippet}
</body></html>"""


class TenantSite:
    """Serves ``snippet`` at ``/`` and a token endpoint at ``POST /voice-token`` on one
    port, whatever the host name (a test maps several names to 127.0.0.1)."""

    def __init__(self, *, snippet: str, platform_url: str, api_key: str) -> None:
        self.snippet = snippet
        self.platform_url = platform_url
        self.api_key = api_key
        self.agent_id: int | None = None
        self.tokens_issued = 0
        self.csrf_refusals = 0
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                # Django's csrftoken cookie, readable by the page's scripts (not HttpOnly),
                # set once per browser as Django does.
                cookie = None
                if "csrftoken" not in SimpleCookie(self.headers.get("Cookie", "")):
                    cookie = f"csrftoken={secrets.token_hex(16)}; Path=/; SameSite=Lax"
                body = PAGE.format(snippet=site.snippet).encode()
                site._answer(self, 200, "text/html", body, cookie=cookie)

            def do_POST(self) -> None:
                if self.path != "/voice-token":
                    site._answer(self, 404, "text/plain", b"not found")
                    return
                if not site.csrf_ok(self):
                    site.csrf_refusals += 1
                    site._answer(self, 403, "application/json", b'{"error": "CSRF failed"}')
                    return
                status, body = site.issue_token()
                site._answer(self, status, "application/json", body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet test output

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def csrf_ok(handler: BaseHTTPRequestHandler) -> bool:
        """The request's X-CSRFToken header equals its csrftoken cookie (and is not empty)."""
        cookies = SimpleCookie(handler.headers.get("Cookie", ""))
        expected = cookies["csrftoken"].value if "csrftoken" in cookies else ""
        given = handler.headers.get("X-CSRFToken", "")
        return bool(expected) and secrets.compare_digest(given, expected)

    def issue_token(self) -> tuple[int, bytes]:
        """The tenant's backend: ask the platform for a token (server to server, with the
        API key, which never reaches the browser) and return it."""
        request = urllib.request.Request(  # noqa: S310 (the test's own platform URL)
            f"{self.platform_url}/api/v1/agents/{self.agent_id}/tokens/",
            data=json.dumps({"user_id": "shop-visitor-1"}).encode(),
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                issued = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return 502, json.dumps({"error": f"platform answered {exc.code}"}).encode()
        self.tokens_issued += 1
        return 200, json.dumps({"token": issued["token"]}).encode()

    @staticmethod
    def _answer(
        handler: BaseHTTPRequestHandler,
        status: int,
        kind: str,
        body: bytes,
        cookie: str | None = None,
    ) -> None:
        handler.send_response(status)
        if cookie is not None:
            handler.send_header("Set-Cookie", cookie)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        handler.wfile.write(body)

    def __enter__(self) -> TenantSite:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
