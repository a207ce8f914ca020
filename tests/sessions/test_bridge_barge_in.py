"""Barge-in: the client hears ``interrupted`` before any later audio, and nothing of the
interrupted turn after it. Real-time pace, so the reply is still streaming when we speak."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from sessions.models import VoiceSession
from tests.factories import AgentFactory
from tests.sessions.conftest import issue_token, open_client, silence, tone

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live_emulator_settings():
    return {"pace": 1.0}


async def test_barge_in_stops_audio_and_orders_interrupted_first(
    alice, live_settings, live_emulator
):
    agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, output_transcription=True
    )
    client = await open_client(f"token={await issue_token(agent)}")
    started = await client.until("session.started")
    await client.send(type="text", text="please tell me a long story about the sea")
    while not client.audio:  # the spoken reply has started
        await client.recv()
    for _ in range(3):
        await client.send_audio(tone(100))  # the user talks over it
    await client.until("interrupted")
    after = client.order[client.order.index("interrupted") + 1 :]
    # Until the interrupted turn completes, no more of its audio may reach the client.
    while "turn_complete" not in after:
        await client.recv()
        after = client.order[client.order.index("interrupted") + 1 :]
    assert "audio" not in after[: after.index("turn_complete")]
    for _ in range(8):
        await client.send_audio(silence(100))
    await client.send(type="close")
    await client.until_closed()
    session = await database_sync_to_async(VoiceSession.unscoped.get)(pk=started["session_id"])
    assert session.interruptions == 1
    recorded = live_emulator.recorder.last()
    assert any("interrupted" in str(sent) for sent in recorded.sent)
