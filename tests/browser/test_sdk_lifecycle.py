"""The SDK's connection lifecycle in Chromium against a scripted fake platform (a
WebSocket server in this process): close() at every stage of connecting, the close-code
policy, the handshake retries of 4012 and 4013, and the widget after a server-side end."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from tests.browser.pages import new_page, wait_for
from tests.processes import ROOT
from voice_client.protocol import should_resume

STATIC = ROOT / "voice_platform" / "static"


class FakePlatform:
    """`script`: what each next connection does ("serve" when it runs out):
    - "serve": session.started, then answers `close` with session.ended and 1000;
    - "slow": the same, its opening handshake answered only after 1 s;
    - "restart": refused at the handshake with 4012;
    - "unavailable": `error` `unavailable` (retry_after 1), then 4013;
    - "end:<reason>:<code>:<error code>": started, 0.5 s later the error, session.ended and
      the close.
    """

    def __init__(self) -> None:
        self.script: list[str] = []
        self.connections: list[dict[str, Any]] = []
        self.url = ""

    async def process_request(self, connection: ServerConnection, request: Request) -> None:
        if self.script and self.script[0] == "slow":
            await asyncio.sleep(1.0)

    async def handler(self, ws: ServerConnection) -> None:
        behaviour = self.script.pop(0) if self.script else "serve"
        record: dict[str, Any] = {"path": ws.request.path, "at": time.monotonic(), "texts": []}
        self.connections.append(record)
        n = len(self.connections)
        if behaviour == "restart":
            await ws.close(4012, "server restarting")
            return
        if behaviour == "unavailable":
            error = {"type": "error", "code": "unavailable", "message": "db", "retry_after": 1}
            await ws.send(json.dumps(error))
            await ws.close(4013, "unavailable")
            return
        await ws.send(
            json.dumps(
                {
                    "type": "session.started",
                    "session_id": "00000000-0000-0000-0000-000000000001",
                    "resume_token": f"rt_{n}",
                    "agent": {"id": 1, "name": "fake", "response_modality": "AUDIO"},
                    "audio": {"input_rate": 16000, "output_rate": 24000},
                }
            )
        )
        if behaviour.startswith("end:"):
            _, reason, code, error_code = behaviour.split(":")
            await asyncio.sleep(0.5)
            error = {"type": "error", "code": error_code, "message": f"{error_code} happened"}
            await ws.send(json.dumps(error))
            await ws.send(json.dumps({"type": "session.ended", "reason": reason}))
            await ws.close(int(code), "session failed")
            return
        with contextlib.suppress(ConnectionClosed):  # a dropped client (4900, 1006)
            async for message in ws:
                if isinstance(message, str):
                    kind = json.loads(message)["type"]
                    record["texts"].append(kind)
                    if kind == "close":
                        ended = {"type": "session.ended", "reason": "client_closed"}
                        await ws.send(json.dumps(ended))
                        await ws.close(1000, "session ended")


@pytest_asyncio.fixture
async def fake_platform() -> AsyncIterator[FakePlatform]:
    fake = FakePlatform()
    async with serve(
        fake.handler, "127.0.0.1", 0, process_request=fake.process_request, compression=None
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        fake.url = f"ws://127.0.0.1:{port}/ws/v1/live"
        yield fake


class _SiteHandler(SimpleHTTPRequestHandler):
    """The SDK's static files, and `POST /voice-token` (records its CSRF header)."""

    def do_POST(self) -> None:
        self.server.token_requests.append(self.headers.get("X-CSRFToken"))  # type: ignore[attr-defined]
        body = b'{"token": "ct_fake"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def site() -> Iterator[Any]:
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_SiteHandler, directory=str(STATIC))
    )
    server.token_requests = []  # type: ignore[attr-defined]
    server.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


async def sdk_page(launch_browser: Any, site: Any) -> Any:
    page = await new_page(await launch_browser(None))
    await page.goto(site.url + "/voice_agent/")
    await page.evaluate(
        "async () => { const sdk = await import('/voice_agent/voice-agent.js');"
        " window.VoiceAgent = sdk.VoiceAgent;"
        " window.sleep = (ms) => new Promise((r) => setTimeout(r, ms)); }"
    )
    return page


# Connects, runs `body` (the agent is `agent`, the outcome of connect() is `outcome()`).
LIFECYCLE = """async ({ url, body }) => {
  const settled = [];
  const agent = new VoiceAgent(%s);
  window.agent = agent;
  const connecting = agent.connect().then(() => "resolved", (e) => `rejected ${e.code}`);
  connecting.then((o) => settled.push(o));
  const outcome = () => Promise.race([connecting, sleep(6000).then(() => "pending")]);
  const result = await (new Function("agent", "outcome", "sleep",
    `return (async () => { ${body} })()`))(agent, outcome, sleep);
  let mic;
  try { await agent.startMicrophone(); mic = "started"; } catch (e) { mic = e.message; }
  return { ...result, mic, state: agent.state, media: __mediaState() };
}"""


async def test_close_during_the_token_fetch_opens_nothing(launch_browser, site, fake_platform):
    page = await sdk_page(launch_browser, site)
    result = await page.evaluate(
        LIFECYCLE % "{ server: url, getToken: () => new Promise((r) => (window.giveToken = r)) }",
        {
            "url": fake_platform.url,
            "body": "await sleep(50); await agent.close(); window.giveToken('ct_fake');"
            " const o = await outcome(); await sleep(300); return { outcome: o };",
        },
    )
    assert result["outcome"] == "rejected 1000"
    assert result["state"] == "closed"
    assert result["mic"] == "the session is closed"
    assert result["media"]["sockets"] == []
    assert result["media"]["tracks"] == []
    assert set(result["media"]["contexts"]) == {"closed"}
    assert fake_platform.connections == []


async def test_close_while_the_socket_is_connecting_ends_the_session(
    launch_browser, site, fake_platform
):
    fake_platform.script = ["slow"]
    page = await sdk_page(launch_browser, site)
    result = await page.evaluate(
        LIFECYCLE % "{ url: url + '?token=ct_fake' }",
        {
            "url": fake_platform.url,
            "body": "await sleep(200); const during = agent.socket.readyState;"
            " await agent.close(); return { during, outcome: await outcome() };",
        },
    )
    assert result["during"] == 0  # CONNECTING when close() came
    assert result["outcome"] == "rejected 1000"  # settled, not left pending
    assert result["state"] == "closed"
    assert result["mic"] == "the session is closed"
    assert set(result["media"]["sockets"]) == {3}
    # The session that started anyway was told to end, not left waiting for a resume.
    [connection] = fake_platform.connections
    assert connection["texts"] == ["close"]


async def test_close_while_reconnecting_resumes_only_to_end_the_session(
    launch_browser, site, fake_platform
):
    page = await sdk_page(launch_browser, site)
    result = await page.evaluate(
        LIFECYCLE % "{ url: url + '?token=ct_fake' }",
        {
            "url": fake_platform.url,
            "body": "await outcome(); agent.debugDropConnection();"
            " await new Promise((r) => agent.on('reconnecting', r));"
            " const during = agent.state; await agent.close(); return { during };",
        },
    )
    assert result["during"] == "reconnecting"
    assert result["state"] == "closed"
    assert result["mic"] == "the session is closed"
    first, resumed = fake_platform.connections
    assert first["path"].endswith("?token=ct_fake")
    assert resumed["path"].endswith("?resume=rt_1")
    assert resumed["texts"] == ["close"]


async def test_handshake_4012_and_4013_are_retried_with_the_same_token(
    launch_browser, site, fake_platform
):
    fake_platform.script = ["restart", "unavailable", "serve"]
    page = await sdk_page(launch_browser, site)
    result = await page.evaluate(
        LIFECYCLE
        % "{ url: url + '?token=ct_fake', onReconnecting: (e) => (window.retries ||= []).push(e) }",
        {
            "url": fake_platform.url,
            "body": "const o = await outcome(); const s = agent.state; await agent.close();"
            " return { outcome: o, open: s, retries: window.retries };",
        },
    )
    assert result["outcome"] == "resolved"
    assert result["open"] == "open"
    assert [r["reason"] for r in result["retries"]] == ["closed_4012", "closed_4013"]
    assert result["retries"][1]["delayMs"] == 1000  # the error's retry_after
    paths = [c["path"] for c in fake_platform.connections]
    assert paths == [paths[0]] * 3
    assert paths[0].endswith("?token=ct_fake")
    _, unavailable, served = fake_platform.connections
    assert served["at"] - unavailable["at"] >= 0.95


CODES = [1000, 1001, 1002, 1006, 1007, 1008, 1009, 1011, 1012, 4000, 4001, 4003, 4008,
         4009, 4011, 4012, 4013, 4029, 4030, 4900]  # fmt: skip


async def test_close_policy_matches_the_python_client(launch_browser, site):
    page = await sdk_page(launch_browser, site)
    actions = await page.evaluate(
        """async (codes) => {
          const { closeAction } = await import('/voice_agent/close-codes.js');
          const act = (c) => closeAction({ hasSession: true, started: true, ended: false, ...c });
          return {
            started: codes.map((code) => act({ code }).action),
            restart: act({ code: 4012 }),
            handshake: codes.map((code) =>
              closeAction({ code, started: false, ended: false, hasSession: false }).action),
            unavailable: closeAction({ code: 4013, started: false, ended: false,
                                       hasSession: false, retryAfter: 5 }),
            afterEnded: codes.map((code) => act({ code, ended: true }).action),
          };
        }""",
        CODES,
    )
    # A started session: resumed exactly when the Python client resumes, except a 1000
    # without session.ended (from a proxy: the server says session.ended first).
    expected = ["resume" if should_resume(c) or c == 1000 else "final" for c in CODES]
    assert actions["started"] == expected
    assert actions["restart"] == {"action": "resume", "delayMs": 0}
    # At the handshake of a new session only 4012 is retried (4013 needs a retry_after).
    assert [c for c, a in zip(CODES, actions["handshake"], strict=True) if a != "final"] == [4012]
    assert actions["unavailable"] == {"action": "retry", "delayMs": 5000}
    assert set(actions["afterEnded"]) == {"final"}


WIDGET = "document.querySelector('voice-agent-widget')"


async def test_widget_shows_server_endings_and_restarts_with_one_click(
    launch_browser, site, fake_platform
):
    fake_platform.script = ["end:server_error:4011:server_error", "end:upstream_busy:4013:busy"]
    page = await sdk_page(launch_browser, site)
    # Created by script: the constructor may not set attributes (NotSupportedError).
    await page.evaluate(
        """async (url) => {
          await import('/voice_agent/widget.js');
          const widget = document.createElement('voice-agent-widget');
          widget.setAttribute('token-url', '/voice-token');
          widget.setAttribute('csrf-token', 'from-the-attribute');
          widget.setAttribute('server', url);
          document.body.append(widget);
        }""",
        fake_platform.url,
    )
    assert await page.evaluate(f"{WIDGET}.dataset.state") == "idle"
    status = page.locator("voice-agent-widget .status")

    await page.click("voice-agent-widget button")
    await wait_for(page, f"{WIDGET}.state === 'error'")
    assert "server_error happened" in await status.inner_text()
    assert await page.evaluate(f"{WIDGET}.closeCode") == 4011

    await page.click("voice-agent-widget button")  # one click starts anew
    await wait_for(page, f"{WIDGET}.state === 'refused'")
    assert "busy" in await status.inner_text()
    assert await page.evaluate(f"{WIDGET}.closeCode") == 4013

    await page.click("voice-agent-widget button")
    await wait_for(page, f"{WIDGET}.state === 'live'")
    await page.click("voice-agent-widget button")  # End
    await wait_for(page, f"{WIDGET}.state === 'ended' && {WIDGET}.agent === null")
    await wait_for(page, "__mediaState().contexts.every((c) => c === 'closed')")
    assert len(fake_platform.connections) == 3
    assert fake_platform.connections[-1]["texts"] == ["close"]
    assert site.token_requests == ["from-the-attribute"] * 3
