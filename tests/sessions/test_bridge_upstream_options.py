"""What the bridge's upstream connection offers the Live service."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from agents.models import Agent
from tests.factories import AgentFactory
from tests.sessions.conftest import issue_token, open_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("deflate", [False, True])
async def test_bridge_upstream_offers_deflate_only_when_configured(
    alice, live_settings, live_emulator, deflate
):
    live_settings.LIVE_UPSTREAM_DEFLATE = deflate
    agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, response_modality=Agent.Modality.TEXT
    )
    client = await open_client(f"token={await issue_token(agent)}")
    await client.until("session.started")
    await client.send(type="text", text="hello there")
    await client.until("turn_complete")  # the session works either way
    assert client.texts("text") == "You said: hello there"
    await client.send(type="close")
    await client.until_closed()
    offered = live_emulator.recorder.last().headers.get("sec-websocket-extensions", "")
    assert ("permessage-deflate" in offered) is deflate
