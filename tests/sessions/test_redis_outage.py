"""A Redis outage degrades, never kills (issue 12).

A real Daphne process uses a Redis of this test's own for its channel layer, cache and
broker; the test kills that Redis mid-conversation and brings it back. Audio and text never
needed Redis: the conversations go on, sessions that end release their slot, REST reads
answer, and once Redis is back the channel layer carries control messages again.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from channels.db import database_sync_to_async

from conftest import require_postgres
from sessions.models import VoiceSession
from tests.factories import AgentFactory
from tests.processes import PrivateRedis, live_env, start_daphne, stop_processes, until
from tests.sessions.conftest import issue_token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis_server(tmp_path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def daphne_port(live_emulator, redis_server, tmp_path) -> Iterator[int]:
    require_postgres()
    proc, port = start_daphne(live_env(live_emulator, redis_server.url), tmp_path / "daphne.log")
    try:
        yield port
    finally:
        stop_processes([proc])
        print((tmp_path / "daphne.log").read_text()[-4000:])  # shown when the test fails


async def talk(ws: Any, text: str) -> tuple[dict[str, Any], int]:
    """One turn: the turn_complete event and how many audio bytes came with it."""
    await ws.send(json.dumps({"type": "text", "text": text}))
    audio = 0
    async with asyncio.timeout(15):
        while True:
            message = await ws.recv()
            if isinstance(message, bytes):
                audio += len(message)
                continue
            event = json.loads(message)
            if event["type"] == "turn_complete":
                return event, audio


async def rest(port: int, method: str, path: str, api_key: str) -> tuple[int, str]:
    """A REST call to the server process, as an integrator's backend makes it."""

    def call() -> tuple[int, str]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            method=method,
            headers={"Authorization": f"Bearer {api_key}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    return await asyncio.to_thread(call)


async def session_row(session_id: str) -> VoiceSession:
    return await database_sync_to_async(VoiceSession.unscoped.get)(pk=session_id)


async def test_sessions_keep_talking_through_a_redis_outage_and_release_their_slots(
    alice, live_settings, live_emulator, redis_server, daphne_port
):
    tenant = alice.tenant
    tenant.max_concurrent_sessions = 2
    await database_sync_to_async(tenant.save)()
    text_agent = await database_sync_to_async(AgentFactory)(tenant=tenant, response_modality="TEXT")
    audio_agent = await database_sync_to_async(AgentFactory)(
        tenant=tenant, response_modality="AUDIO"
    )
    base = f"ws://127.0.0.1:{daphne_port}/ws/v1/live"
    async with (
        websockets.connect(f"{base}?token={await issue_token(text_agent)}") as ws_text,
        websockets.connect(f"{base}?token={await issue_token(audio_agent)}") as ws_audio,
    ):
        started_text = await until(ws_text, "session.started")
        started_audio = await until(ws_audio, "session.started")
        await talk(ws_text, "before the outage")
        await talk(ws_audio, "before the outage")

        redis_server.stop()
        await asyncio.sleep(1.0)  # the channel layer's reads fail in the meantime
        # The conversations go on: nothing on the audio or text path needs Redis.
        for n in range(2):
            await talk(ws_text, f"during the outage {n}")
            _, audio = await talk(ws_audio, f"during the outage {n}")
            assert audio > 0
        # REST reads answer (no 500) while Redis is down.
        status, body = await rest(daphne_port, "GET", "/api/v1/sessions/", alice.api_key)
        assert status == 200, body
        # A session that ends during the outage ends properly and frees its slot.
        await ws_text.send(json.dumps({"type": "close"}))
        ended = await until(ws_text, "session.ended")
        assert ended["reason"] == "client_closed"
        row = await session_row(started_text["session_id"])
        assert row.status == VoiceSession.Status.ENDED
        assert row.turns == 3

        # A new session opens during the outage, in the freed slot.
        async with websockets.connect(f"{base}?token={await issue_token(text_agent)}") as ws_new:
            await until(ws_new, "session.started")
            await talk(ws_new, "opened during the outage")
            await ws_new.send(json.dumps({"type": "close"}))
            await until(ws_new, "session.ended")

        redis_server.start()
        await asyncio.sleep(1.0)
        # Control messages travel again once Redis is back: ending the audio session over
        # REST reaches its connection through the channel layer.
        path = f"/api/v1/sessions/{started_audio['session_id']}/end/"
        status, body = await rest(daphne_port, "POST", path, alice.api_key)
        assert status in (200, 202), body
        ended = await until(ws_audio, "session.ended")
        assert ended["reason"] == "ended_by_api"

    row = await session_row(started_audio["session_id"])
    assert row.status == VoiceSession.Status.ENDED
    assert row.turns == 3
    # Every slot is free again: the tenant's two sessions open at once.
    async with (
        websockets.connect(f"{base}?token={await issue_token(text_agent)}") as a,
        websockets.connect(f"{base}?token={await issue_token(audio_agent)}") as b,
    ):
        await until(a, "session.started")
        await until(b, "session.started")
