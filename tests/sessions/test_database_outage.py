"""A PostgreSQL outage of 10 s costs the conversation nothing (issue 12).

A real Daphne process reaches PostgreSQL through a gate this test can shut: every
connection reset, new ones refused, as during a failover. The conversations go on (they
never needed the database), their writes wait and land once it is back, so the stored
transcript and counters are complete; a session that tries to start meanwhile is refused
with a reason and a retry hint, and REST answers 503 with its reason, never a 500.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import websockets
from channels.db import database_sync_to_async
from django.conf import settings

from conftest import require_postgres, require_redis
from sessions.models import TranscriptEntry, VoiceSession
from tests.factories import AgentFactory
from tests.processes import live_env, start_daphne, stop_processes, until
from tests.sessions.conftest import issue_token
from tests.sessions.test_redis_outage import rest, talk
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db(transaction=True)
OUTAGE_SECONDS = 10.0


@pytest_asyncio.fixture
async def database_gate() -> AsyncIterator[TcpProxy]:
    require_postgres()
    gate = TcpProxy("127.0.0.1", int(settings.DATABASES["default"].get("PORT") or 5432))
    await gate.start()
    try:
        yield gate
    finally:
        await gate.stop()


@pytest.fixture
def daphne_port(live_emulator, database_gate, tmp_path) -> Iterator[int]:
    env = live_env(live_emulator, require_redis())
    db_name = settings.DATABASES["default"]["NAME"]
    env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{database_gate.port}/{db_name}"
    env["DB_POOL_TIMEOUT"] = "2"
    proc, port = start_daphne(env, tmp_path / "daphne.log")
    try:
        yield port
    finally:
        stop_processes([proc])
        print((tmp_path / "daphne.log").read_text()[-4000:])  # shown when the test fails


async def transcript_texts(session_id: str) -> list[str]:
    def read() -> list[str]:
        return list(
            TranscriptEntry.unscoped.filter(session_id=session_id, role="user")
            .order_by("seq")
            .values_list("text", flat=True)
        )

    return await database_sync_to_async(read)()


async def test_a_ten_second_database_outage_loses_no_turn_and_refuses_new_sessions_with_a_reason(
    alice, live_settings, live_emulator, database_gate, daphne_port
):
    text_agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, response_modality="TEXT"
    )
    audio_agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, response_modality="AUDIO"
    )
    late_token = await issue_token(text_agent)
    base = f"ws://127.0.0.1:{daphne_port}/ws/v1/live"
    async with (
        websockets.connect(f"{base}?token={await issue_token(text_agent)}") as ws_text,
        websockets.connect(f"{base}?token={await issue_token(audio_agent)}") as ws_audio,
    ):
        started = [await until(ws, "session.started") for ws in (ws_text, ws_audio)]
        for ws in (ws_text, ws_audio):
            await talk(ws, "turn one")

        database_gate.shut()
        outage_began = asyncio.get_running_loop().time()
        for ws in (ws_text, ws_audio):
            await talk(ws, "turn two, during the outage")
        # REST needs the database: a 503 with its reason, not a 500.
        status, body = await rest(daphne_port, "GET", "/api/v1/sessions/", alice.api_key)
        assert status == 503, body
        assert json.loads(body)["code"] == "database_unavailable"
        # A session cannot start without the database: refused with a reason and a hint.
        async with websockets.connect(f"{base}?token={late_token}") as ws_late:
            refusal = await until(ws_late, "error", timeout=20)
            assert refusal["code"] == "unavailable"
            assert refusal["retry_after"] > 0
            async with asyncio.timeout(10):
                await ws_late.wait_closed()
        assert ws_late.close_code == 4013
        for ws in (ws_text, ws_audio):
            await talk(ws, "turn three, during the outage")
        remaining = OUTAGE_SECONDS - (asyncio.get_running_loop().time() - outage_began)
        await asyncio.sleep(max(0.0, remaining))
        database_gate.reopen()

        for ws in (ws_text, ws_audio):
            await talk(ws, "turn four")
            await ws.send(json.dumps({"type": "close"}))
            assert (await until(ws, "session.ended", timeout=30))["reason"] == "client_closed"

    for event in started:
        row = await database_sync_to_async(VoiceSession.unscoped.get)(pk=event["session_id"])
        assert row.status == VoiceSession.Status.ENDED
        assert row.end_reason == "client_closed"
        assert row.turns == 4
        assert await transcript_texts(event["session_id"]) == [
            "turn one",
            "turn two, during the outage",
            "turn three, during the outage",
            "turn four",
        ]
    # The token refused during the outage was not used up: it opens a session now.
    async with websockets.connect(f"{base}?token={late_token}") as ws_late:
        await until(ws_late, "session.started")
