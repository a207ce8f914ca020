"""A server process stopped with SIGTERM (a deploy) mid-turn: nothing is lost (issue 12).

Daphne cancels every application on SIGTERM. The session must stay resumable, its
client must be told (``session.ended`` ``server_restart``, close 4012) instead of seeing
the socket drop, and the user's turn in flight, which the model's saved history does not
hold yet, must be asked again on the process the client resumes on.
"""

from __future__ import annotations

import asyncio
import json
import signal

import pytest
import websockets
from channels.db import database_sync_to_async

from sessions.models import VoiceSession
from tests.factories import AgentFactory
from tests.processes import until
from tests.sessions.conftest import issue_token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live_emulator_settings():
    # Every reply 1.5 s late: the turn is still in flight when the process stops.
    return {"pace": 20.0, "latency": 1.5}


@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_sigterm_mid_turn_tells_the_client_and_the_turn_is_answered_after_the_resume(
    alice, live_settings, live_emulator, two_daphnes, modality
):
    (proc_a, port_a), (_, port_b) = two_daphnes
    agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, response_modality=modality
    )
    url = f"ws://127.0.0.1:{port_a}/ws/v1/live?token={await issue_token(agent)}"
    async with websockets.connect(url) as ws:
        started = await until(ws, "session.started")
        await ws.send(json.dumps({"type": "text", "text": "remember the blue whale"}))
        async with asyncio.timeout(5):  # the turn reached the model, its answer has not
            while not any("blue whale" in t for r in live_emulator.recorder.sessions
                          for t in r.texts):  # fmt: skip
                await asyncio.sleep(0.05)
        proc_a.send_signal(signal.SIGTERM)
        ended = await until(ws, "session.ended", timeout=10)
        assert ended["reason"] == "server_restart"
        async with asyncio.timeout(5):
            await ws.wait_closed()
    assert ws.close_code == 4012
    row = await database_sync_to_async(VoiceSession.unscoped.get)(pk=started["session_id"])
    assert row.status == VoiceSession.Status.RECONNECTING  # resumable, not ended

    resume = f"ws://127.0.0.1:{port_b}/ws/v1/live?resume={started['resume_token']}"
    async with websockets.connect(resume) as ws_b:
        resumed = await until(ws_b, "session.started")
        assert resumed["session_id"] == started["session_id"]
        await until(ws_b, "turn_complete", timeout=20)  # the turn in flight, answered
        upstream = live_emulator.recorder.last()
        assert any("blue whale" in t for t in upstream.texts)  # asked again on process B
        await ws_b.send(json.dumps({"type": "close"}))
        await until(ws_b, "session.ended")
    row = await database_sync_to_async(VoiceSession.unscoped.get)(pk=started["session_id"])
    assert row.status == VoiceSession.Status.ENDED
    assert row.turns == 1


async def test_a_stopping_process_refuses_new_sessions_with_4012(alice, live_settings, monkeypatch):
    from sessions import shutdown
    from tests.sessions.conftest import open_client

    monkeypatch.setattr(shutdown, "_draining", True)
    agent = await database_sync_to_async(AgentFactory)(tenant=alice.tenant)
    token = await issue_token(agent)
    client = await open_client(f"token={token}")
    assert await client.until_closed() == 4012
    monkeypatch.setattr(shutdown, "_draining", False)
    client = await open_client(f"token={token}")  # the token was not used up
    await client.until("session.started")
    await client.send(type="close")
    assert await client.until_closed() == 1000
