"""The SDK's connection lifecycle in Chromium against a scripted fake platform (a
WebSocket server in this process): close() at every stage of connecting, the close-code
policy, the handshake retries of 4012 and 4013, the widget after a server-side end, and
the `playback.started` reports of spoken replies."""

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
      the close;
    - "speak": "serve", while four replies are spoken (`speak`).
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
        record: dict[str, Any] = {
            "path": ws.request.path, "at": time.monotonic(), "texts": [], "text_at": [],
            "replies": [],
        }  # fmt: skip
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
        speaking = asyncio.create_task(self.speak(ws, record)) if behaviour == "speak" else None
        with contextlib.suppress(ConnectionClosed):  # a dropped client (4900, 1006)
            async for message in ws:
                if isinstance(message, str):
                    kind = json.loads(message)["type"]
                    record["texts"].append(kind)
                    record["text_at"].append(time.monotonic())
                    if kind == "close":
                        ended = {"type": "session.ended", "reason": "client_closed"}
                        await ws.send(json.dumps(ended))
                        await ws.close(1000, "session ended")
        if speaking is not None:
            speaking.cancel()

    async def speak(self, ws: ServerConnection, record: dict[str, Any]) -> None:
        """Four replies of 100 ms chunks; ``record["replies"]``: when each one's first chunk
        went out. 1: two chunks 0.5 s apart (an underrun inside the reply), turn_complete.
        2: `interrupted` 0.7 s after it came (it played for about 0.45 s). 3: `interrupted`
        as soon as it came, before the player's jitter buffer ran out (never heard).
        4: turn_complete."""
        chunk = bytes(4800)  # 100 ms of 24 kHz PCM16

        async def reply(chunks: int, gap: float = 0.0) -> None:
            record["replies"].append(time.monotonic())
            for n in range(chunks):
                if n:
                    await asyncio.sleep(gap)
                await ws.send(chunk)

        with contextlib.suppress(ConnectionClosed):
            await reply(2, gap=0.5)
            await ws.send(json.dumps({"type": "turn_complete"}))
            await asyncio.sleep(0.3)
            await reply(2)
            await asyncio.sleep(0.7)
            await ws.send(json.dumps({"type": "interrupted"}))
            await reply(1)
            await ws.send(json.dumps({"type": "interrupted"}))
            await reply(2)
            await ws.send(json.dumps({"type": "turn_complete"}))


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


async def test_each_spoken_reply_is_reported_once_when_it_starts_to_play(
    launch_browser, site, fake_platform
):
    fake_platform.script = ["speak", "speak"]
    page = await sdk_page(launch_browser, site)
    # Two sessions at once: the default, and one with the reports turned off. A jitter
    # buffer of 250 ms sets playing apart from receiving.
    result = await page.evaluate(
        """async (url) => {
          const on = new VoiceAgent({ url: url + '?token=ct_on', jitterMs: 250 });
          const off = new VoiceAgent({ url: url + '?token=ct_off', jitterMs: 250,
                                       reportPlayback: false });
          await Promise.all([on.connect(), off.connect()]);
          const heard = () => on.stats.playback.runs.filter((r) => r.startedAt).length;
          for (let i = 0; i < 100 && heard() < 3; i++) await sleep(50);
          await sleep(300);  // a second report of a reply would have gone out by now
          const stats = [on, off].map((a) => JSON.parse(JSON.stringify(a.stats)));
          await Promise.all([on.close(), off.close()]);
          return stats;
        }""",
        fake_platform.url,
    )
    on, off = sorted(fake_platform.connections, key=lambda c: "ct_off" in c["path"])
    assert on["path"].endswith("?token=ct_on")
    # Replies 1, 2 and 4 were heard; 3 was cut off before it played.
    assert on["texts"] == ["playback.started"] * 3 + ["close"]
    assert result[0]["playbackReports"] == 3
    runs = result[0]["playback"]["runs"]
    assert [bool(r.get("startedAt")) for r in runs] == [True, True, False, True]
    assert runs[0]["gaps"] == 1  # the underrun did not start a second report
    # Each report came when the reply started to play: after the jitter buffer, not when
    # its first chunk arrived; and reply 2's before its interruption.
    reports = on["text_at"][:3]
    for report, reply in zip(reports, [on["replies"][i] for i in (0, 1, 3)], strict=True):
        assert 0.2 <= report - reply <= 1.0
    assert reports[1] < on["replies"][2]
    # Turned off: nothing reported, although its replies played just the same.
    assert off["texts"] == ["close"]
    assert result[1]["playbackReports"] == 0
    assert sum(bool(r.get("startedAt")) for r in result[1]["playback"]["runs"]) == 3
