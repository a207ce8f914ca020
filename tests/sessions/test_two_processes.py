"""Client resume on another server process: two Daphne processes, shared Postgres + Redis."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets
from channels.db import database_sync_to_async

from sessions.models import VoiceSession
from tests.factories import AgentFactory
from tests.processes import until
from tests.sessions.conftest import issue_token

pytestmark = pytest.mark.django_db(transaction=True)


async def test_resume_on_another_process_and_supersede_across_processes(
    alice, live_settings, live_emulator, two_daphnes
):
    (_, port_a), (_, port_b) = two_daphnes
    agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, response_modality="TEXT"
    )
    token = await issue_token(agent)
    async with websockets.connect(f"ws://127.0.0.1:{port_a}/ws/v1/live?token={token}") as ws_a:
        started = await until(ws_a, "session.started")
        await ws_a.send(json.dumps({"type": "text", "text": "on process A"}))
        await until(ws_a, "turn_complete")
        handle = live_emulator.recorder.last().handles[-1]
    # Closed without a "close" message: the session waits for its client.
    async with asyncio.timeout(10):
        while (await database_sync_to_async(VoiceSession.unscoped.get)(
            pk=started["session_id"])).client_detached_at is None:  # fmt: skip
            await asyncio.sleep(0.05)

    url_b = f"ws://127.0.0.1:{port_b}/ws/v1/live?resume={started['resume_token']}"
    async with websockets.connect(url_b) as ws_b:
        resumed = await until(ws_b, "session.started")
        assert resumed["session_id"] == started["session_id"]
        upstream = live_emulator.recorder.last()
        assert upstream.resumed
        assert upstream.client_setup["sessionResumption"]["handle"] == handle
        await ws_b.send(json.dumps({"type": "text", "text": "on process B"}))
        await until(ws_b, "turn_complete")

        # A third connection, back on process A, supersedes B over the Redis channel layer.
        url_a = f"ws://127.0.0.1:{port_a}/ws/v1/live?resume={resumed['resume_token']}"
        async with websockets.connect(url_a) as ws_a2:
            await until(ws_a2, "session.started")
            ended = await until(ws_b, "session.ended")
            assert ended["reason"] == "superseded"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws_b.recv(), 10)
            assert closed.value.rcvd.code == 4000
            await ws_a2.send(json.dumps({"type": "close"}))
            await until(ws_a2, "session.ended")
    session = await database_sync_to_async(VoiceSession.unscoped.get)(pk=started["session_id"])
    assert session.status == VoiceSession.Status.ENDED
    assert session.turns == 2
    assert session.reconnects == 0


@pytest.mark.parametrize(
    ("refusal", "code"),
    [((1007, "API key expired. Please renew the API key."), 4011),
     ((1011, "RESOURCE_EXHAUSTED: Maximum concurrent sessions"), 4013)],
    ids=["rejected", "busy"],
)  # fmt: skip
async def test_a_failed_session_really_closes_the_socket_through_daphne(
    alice, live_settings, live_emulator, two_daphnes, refusal, code
):
    """Through a real ASGI server: the close after ``session.ended`` reaches the client at
    once, with a code an application may send (Daphne refused 1011 and left it open)."""
    agent = await database_sync_to_async(AgentFactory)(tenant=alice.tenant)
    live_emulator.fail_next(refuse_code=refusal[0], refuse_reason=refusal[1])
    url = f"ws://127.0.0.1:{two_daphnes[0][1]}/ws/v1/live?token={await issue_token(agent)}"
    async with websockets.connect(url) as ws:
        await until(ws, "session.ended")
        ended = time.monotonic()
        async with asyncio.timeout(5):
            await ws.wait_closed()
        assert time.monotonic() - ended < 2.0
    assert ws.close_code == code
