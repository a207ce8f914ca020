"""Protocol violations below our consumer: frames Daphne (autobahn) refuses itself (issue 12).

Oversize messages and text frames that are not UTF-8 never reach the consumer; autobahn
fails the connection. The session must still end (not wait for a resume that a broken
client will not make), with a documented close code, and release its slot.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import websockets
from channels.db import database_sync_to_async

from conftest import require_postgres, require_redis
from sessions.models import VoiceSession
from tests.factories import AgentFactory
from tests.processes import DAPHNE, ROOT, free_port, live_env, stop_processes, until, wait_listening
from tests.sessions.conftest import issue_token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def daphne_port(live_emulator, tmp_path) -> Iterator[int]:
    import subprocess

    require_postgres()
    port = free_port()
    log = (tmp_path / "daphne.log").open("w")
    proc = subprocess.Popen(
        [*DAPHNE, "-p", str(port), "--websocket-max-message-size", "65536",
         "--websocket-max-frame-size", "65536", "voice_platform.asgi:application"],
        cwd=ROOT, env=live_env(live_emulator, require_redis()),
        stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    wait_listening(port)
    try:
        yield port
    finally:
        stop_processes([proc])
        print((tmp_path / "daphne.log").read_text()[-3000:])


async def wait_row(session_id: str, timeout: float = 10) -> VoiceSession:
    async with asyncio.timeout(timeout):
        while True:
            row = await database_sync_to_async(VoiceSession.unscoped.get)(pk=session_id)
            if row.status == VoiceSession.Status.ENDED:
                return row
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("kind", ["oversize_text", "oversize_binary", "invalid_utf8"])
@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_a_frame_the_server_refuses_ends_the_session_with_a_documented_close(
    alice, live_settings, live_emulator, daphne_port, kind, modality
):
    agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, response_modality=modality
    )
    url = f"ws://127.0.0.1:{daphne_port}/ws/v1/live?token={await issue_token(agent)}"
    async with websockets.connect(url, max_size=None) as ws:
        started = await until(ws, "session.started")
        if kind == "oversize_text":
            await ws.send(json.dumps({"type": "text", "text": "x" * 70_000}))
        elif kind == "oversize_binary":
            await ws.send(b"\x00" * 70_000)
        else:
            # Bytes sent as a text frame as they are: not UTF-8.
            await ws.send(b'{"type":"text","text":"\xff\xfe"}', text=True)
        events = []
        async with asyncio.timeout(10):
            try:
                while True:
                    message = await ws.recv()
                    if isinstance(message, str):
                        events.append(json.loads(message))
            except websockets.ConnectionClosed:
                pass
    # Closed by the server with the code the protocol names, not dropped (1006).
    assert ws.close_code == (1007 if kind == "invalid_utf8" else 1009), ws.close_reason
    assert events == []  # nothing can follow a close the server has begun
    row = await wait_row(started["session_id"])  # ended, not left waiting for a resume
    assert row.end_reason == "bad_frame"
    assert row.client_detached_at is None
