"""A client that resumes hears each tool call finish once (protocol: one ``tool.finished``
per call), while the model still gets its answer: the turn in flight is asked again on the
new connection, and the call, finished before the client left, answers from its outcome."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from sessions.models import VoiceSession
from tests.sessions.conftest import issue_token, open_client
from tests.sessions.test_bridge_resume import wait_for_status
from tests.sessions.test_tool_exactly_once import EMAIL, agent_with, heard
from tools.models import ToolCallRecord

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live_emulator_settings():
    # Every reply 2.5 s late: the tool has finished, its turn's answer has not come.
    return {"latency": 2.5}


@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_a_call_told_before_the_client_left_is_not_told_again(
    alice, tools_ready, live_emulator, modality
):
    agent = await agent_with(
        alice.tenant, modality, send_email={"policy": {"allowed_domains": ["example.com"]}}
    )
    first = await open_client(f"token={await issue_token(agent)}")
    started = await first.until("session.started")
    await first.send(type="text", text=EMAIL)
    (told,) = [await first.until("tool.finished", timeout=20)]
    # Well past the second's margin, then the network drops before the model's answer.
    await asyncio.sleep(1.3)
    assert first.of("turn_complete") == []
    await first.comm.disconnect()
    await wait_for_status(started["session_id"], VoiceSession.Status.RECONNECTING)

    second = await open_client(f"resume={started['resume_token']}")
    await second.until("session.started")
    await second.until("turn_complete", timeout=30)
    (record,) = await database_sync_to_async(list)(ToolCallRecord.unscoped.all())
    assert record.status == "succeeded"
    assert told["call_id"] == record.call_id
    # The model was answered (from the stored outcome) on the new connection...
    assert heard(second, modality).count("Result of send_email") == 1
    # ...and the client heard the call finish once, on the connection it was on then.
    assert second.of("tool.finished") == []
    assert second.of("tool.started") == []
    await second.send(type="close")
    await second.until_closed()
