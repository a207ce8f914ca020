"""A server process killed mid-tool: the client resumes on another process, the model asks
again there, and is answered from the one run's outcome (issue 10, case d).

Two Daphne processes share PostgreSQL, Redis and a real Celery worker. The tool runs in the
worker, so killing the process that admitted it does not stop it; its outcome reaches the
other process through the session's results group.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Iterator

import pytest
import websockets
from channels.db import database_sync_to_async

from conftest import require_postgres
from sessions.models import VoiceSession
from tests.processes import (
    DAPHNE,
    ROOT,
    database_url,
    free_port,
    stop_processes,
    until,
    wait_listening,
)
from tests.sessions.conftest import issue_token
from tests.sessions.test_tool_exactly_once import SLOW_EMAIL, agent_with, effects

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker_and_daphnes(live_emulator, tools_ready, tmp_path) -> Iterator[list[subprocess.Popen]]:
    """Two Daphne processes routed to this test's Celery worker (``tools_ready`` starts it)."""
    require_postgres()  # processes share the database: not SQLite's in-memory test database
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "voice_platform.settings.test",
        "DATABASE_URL": database_url(),
        "REDIS_URL": tools_ready.REDIS_URL,
        "TOOL_CELERY_QUEUE": tools_ready.TOOL_CELERY_QUEUE,
        "LIVE_API_BASE_URL": live_emulator.base_url,
        "LIVE_API_CA_FILE": str(live_emulator.cert_path),
        "GEMINI_API_KEY": "test-key",
    }
    procs = []
    for _ in range(2):
        port = free_port()
        log = (tmp_path / f"daphne-{port}.log").open("w")
        proc = subprocess.Popen(
            [*DAPHNE, "-p", str(port), "voice_platform.asgi:application"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        proc.port = port  # type: ignore[attr-defined]
        procs.append(proc)
    try:
        for proc in procs:
            wait_listening(proc.port)
        yield procs
    finally:
        stop_processes(procs)


async def texts_until_turn_complete(ws, timeout: float = 20) -> list[dict]:
    events = []
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.recv()
            if isinstance(message, str):
                event = json.loads(message)
                events.append(event)
                if event["type"] == "turn_complete":
                    return events


@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_process_killed_mid_tool_the_client_resumes_elsewhere_and_the_tool_ran_once(
    alice, live_settings, live_emulator, worker_and_daphnes, modality
):
    process_a, process_b = worker_and_daphnes
    agent = await agent_with(alice.tenant, modality, slow_email={})
    token = await issue_token(agent)
    url_a = f"ws://127.0.0.1:{process_a.port}/ws/v1/live?token={token}"
    async with websockets.connect(url_a) as ws_a:
        started = await until(ws_a, "session.started")
        await ws_a.send(json.dumps({"type": "text", "text": "warm up"}))
        await until(ws_a, "turn_complete")
        await ws_a.send(json.dumps({"type": "text", "text": SLOW_EMAIL}))
        tool_started = await until(ws_a, "tool.started")
        process_a.send_signal(signal.SIGKILL)  # mid-tool: the worker is still running it
        process_a.wait(10)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws_a.recv(), 10)

    url_b = f"ws://127.0.0.1:{process_b.port}/ws/v1/live?resume={started['resume_token']}"
    async with websockets.connect(url_b) as ws_b:
        resumed = await until(ws_b, "session.started")
        assert resumed["session_id"] == started["session_id"]
        events = await texts_until_turn_complete(ws_b)
        last = live_emulator.recorder.last()
        await ws_b.send(json.dumps({"type": "close"}))
        await until(ws_b, "session.ended")

    outbox, records = await effects()
    (record,) = records  # one audit row, final
    assert record.status == "succeeded", (record.status, record.error)
    assert record.call_id == tool_started["call_id"]
    assert outbox == 1
    assert last.resumed
    (answer,) = last.tool_responses  # the model on process B got the stored result
    assert answer["response"] == record.result
    assert answer["id"] != record.call_id
    kind = "text" if modality == "TEXT" else "transcript.output"
    heard = "".join(e.get("text", "") for e in events if e["type"] == kind)
    assert heard.count("Result of slow_email") == 1
    finished = [e for e in events if e["type"] == "tool.finished"]
    assert [(e["call_id"], e["status"]) for e in finished] == [(record.call_id, "ok")]
    session = await database_sync_to_async(VoiceSession.unscoped.get)(pk=started["session_id"])
    assert session.replay_text == ""  # the handle after the turn covers it now
