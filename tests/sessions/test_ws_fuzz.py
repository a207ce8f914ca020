"""Generated frames through the real consumer, bridge, SDK and emulator: whatever a client
sends, the session answers within the protocol and ends in a final, documented state."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessions.models import VoiceSession
from tests.factories import AgentFactory
from tests.sessions.conftest import issue_token, open_client
from tests.sessions.ws_strategies import frames

pytestmark = pytest.mark.django_db(transaction=True)
# The close codes and end reasons docs/protocol.md gives for what a client can cause.
DOCUMENTED = {1000: "client_closed", 4008: "rate_limited", 4009: "bad_frame"}


@settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sent=st.lists(frames, min_size=1, max_size=8), modality=st.sampled_from(["TEXT", "AUDIO"]))
async def test_any_frames_end_in_a_documented_state(alice, live_settings, sent, modality):
    agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, response_modality=modality
    )
    client = await open_client(f"token={await issue_token(agent)}")
    started = await client.until("session.started")
    for frame in sent:
        # As the ASGI server hands it on (empty frames included).
        key = "bytes" if isinstance(frame, bytes) else "text"
        await client.comm.send_input({"type": "websocket.receive", key: frame})
    await client.send(type="close")
    code = await client.until_closed(timeout=20)
    assert code in DOCUMENTED, client.order
    for event in client.of("error"):
        assert event["code"] in {"bad_message", "bad_frame", "rate_limited"}, event
    row = await database_sync_to_async(VoiceSession.unscoped.get)(pk=started["session_id"])
    assert row.status == VoiceSession.Status.ENDED
    assert row.end_reason == DOCUMENTED[code]
    await client.comm.wait()
