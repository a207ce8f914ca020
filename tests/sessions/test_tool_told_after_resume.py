"""A client that resumes mid-turn is told again how its tool call ended: at least once, with
the same ``call_id`` (the protocol's rule; a client counts calls by ``call_id``), while the
tool ran once and the model got its answer from the stored outcome. Never zero times: the
old connection's ``tool.finished`` may have gone into a socket already dead."""

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
    # Every reply 1.5 s late: the tool has finished, its turn's answer has not come.
    return {"latency": 1.5}


@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_a_call_finished_before_the_client_left_is_told_again_with_its_call_id(
    alice, tools_ready, live_emulator, modality
):
    agent = await agent_with(
        alice.tenant, modality, send_email={"policy": {"allowed_domains": ["example.com"]}}
    )
    first = await open_client(f"token={await issue_token(agent)}")
    started = await first.until("session.started")
    await first.send(type="text", text=EMAIL)
    (told,) = [await first.until("tool.finished", timeout=20)]
    # Then the network drops, before the model's answer.
    await asyncio.sleep(0.3)
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
    # ...and the new connection tells the client how the call ended, under the same id,
    # without announcing it as started again (it is not running).
    assert [(e["call_id"], e["status"]) for e in second.of("tool.finished")] == [
        (record.call_id, "ok")
    ]
    assert second.of("tool.started") == []
    await second.send(type="close")
    await second.until_closed()
