"""The logs of a real session, tools included: every line carries the session's ids, and
none of the secrets the test created appears anywhere (docs/logging.md, "never logged")."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async

from tests.factories import AgentFactory
from tests.sessions.conftest import live_settings, no_leaked_tasks, open_client  # noqa: F401
from tests.tools.conftest import (
    make_webhook,
    start_celery_worker,
    use_test_queue,
    webhook_receiver,  # noqa: F401 (a fixture)
)
from tests.voice_platform.test_logging import captured_logs, json_lines
from tools.models import OutboxEmail
from tools.services import agent_tool_create, tool_sync_registry
from voice_platform.tenancy.scope import tenant_scope
from voice_platform.tenancy.services import tenant_set_gemini_key

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class World:
    agent: Any
    client_token: str
    gemini_key: str
    webhook_secret: str
    sensitive: str


def make_world(alice: Any, webhook_url: str) -> World:
    """An agent with a sensitive-argument tool, a webhook tool and a failing tool, its
    tenant's own Gemini key, and a client token issued over REST with the tenant's API key."""
    world = World(
        agent=AgentFactory(tenant=alice.tenant, response_modality="TEXT"),
        client_token="",
        gemini_key="AIza" + secrets.token_urlsafe(27)[:35],
        webhook_secret="whsec-" + secrets.token_hex(16),  # no known shape: never logged at all
        sensitive="body-" + secrets.token_hex(16),
    )
    tenant_set_gemini_key(tenant=alice.tenant, api_key=world.gemini_key)
    webhook = make_webhook(alice.tenant, url=webhook_url, secret=world.webhook_secret)
    with tenant_scope(alice.tenant.pk):
        policy = {"allowed_domains": ["example.com"]}
        agent_tool_create(tenant=alice.tenant, agent=world.agent, tool_name="send_email",
                          policy=policy)  # fmt: skip
        agent_tool_create(tenant=alice.tenant, agent=world.agent, tool_name="broken_tool")
        agent_tool_create(tenant=alice.tenant, agent=world.agent, webhook_tool_id=webhook.pk)
    answer = alice.client.post(
        f"/api/v1/agents/{world.agent.pk}/tokens/", {"user_id": "u1"}, format="json"
    )
    assert answer.status_code == 201, answer.content
    world.client_token = answer.json()["token"]
    return world


@pytest.fixture
def tool_worker(request: pytest.FixtureRequest, settings: Any, tmp_path: Path) -> Iterator[Any]:
    """For ``execution="celery"``: a real worker logging JSON at DEBUG to a file."""
    if request.node.callspec.params["execution"] != "celery":
        settings.TOOL_EXECUTION = "inprocess"
        yield None
        return
    queue, redis_url = use_test_queue(settings)
    worker = start_celery_worker(
        queue=queue, redis_url=redis_url, log_path=tmp_path / "worker.log",
        env={"LOG_LEVEL": "DEBUG", "LOG_FORMAT": "json"},
    )  # fmt: skip
    try:
        yield worker
    finally:
        worker.stop()


@pytest.mark.parametrize("execution", ["inprocess", "celery"])
async def test_logging_session_with_tools_leaks_no_secret_and_carries_ids(
    alice,
    live_settings,  # noqa: F811 (the imported fixture)
    live_emulator,
    webhook_receiver,  # noqa: F811 (the imported fixture)
    tool_worker,
    execution,
):
    await database_sync_to_async(tool_sync_registry)()
    world = await database_sync_to_async(make_world)(alice, webhook_receiver.url())
    with captured_logs("DEBUG") as streams:
        client = await open_client(f"token={world.client_token}")
        started = await client.until("session.started")
        email = {"to": "ann@example.com", "subject": "hi", "body": world.sensitive}
        asks = (f"call send_email {json.dumps(email)}", 'call order_status {"order_id": "A-1"}')
        for line in (*asks, "call broken_tool {}"):
            await client.send(type="text", text=line)
            await client.until("turn_complete")
        await client.send(type="close")
        await client.until_closed()

    # The secrets really went through the platform during the capture.
    finished = {e["name"]: e for e in client.of("tool.finished")}
    assert [finished[n]["status"] for n in ("send_email", "order_status", "broken_tool")] == [
        "ok", "ok", "error"
    ]  # fmt: skip
    outbox = await database_sync_to_async(list)(OutboxEmail.unscoped.all())
    assert [m.body for m in outbox] == [world.sensitive]
    assert len(webhook_receiver.requests) == 1
    assert live_emulator.recorder.last().api_key == world.gemini_key
    session_id = started["session_id"]

    captures = {kind: stream.getvalue() for kind, stream in streams.items()}
    if tool_worker is not None:
        captures["worker"] = tool_worker.log()
    secret_values = {
        "tenant API key": alice.api_key,
        "client token": world.client_token,
        "resume token": started["resume_token"],
        "webhook secret": world.webhook_secret,
        "tenant Gemini key": world.gemini_key,
        "sensitive argument": world.sensitive,
    }
    for kind, text in captures.items():
        assert session_id in text, kind  # the capture holds the session: not a vacuous scan
        for name, value in secret_values.items():
            assert value not in text, f"{name} in the {kind} logs"

    lines = json_lines(streams["json"])
    ids = {"tenant": alice.tenant.pk, "agent": world.agent.pk, "session": session_id}
    # The session's own lines (logged from the bridge's and the tool gateway's tasks).
    own = [line for line in lines if line["logger"] == "voice_platform.observability.telemetry"]
    assert own[0]["event"] == "session started"
    assert own[-1]["event"] == "session ended: client_closed"
    assert all({k: line.get(k) for k in ids} == ids for line in own)
    turns = [line for line in own if line["event"].startswith("turn ")]
    assert [line["turn"] for line in turns] == [line["timing"]["turn"] for line in turns]
    assert [line["timing"]["turn"] for line in turns] == [1, 2, 3]
    tools = [line["event"].split()[1] for line in own if line["event"].startswith("tool ")]
    assert sorted(tools) == ["broken_tool", "order_status", "send_email"]

    failed_call = finished["broken_tool"]["call_id"]
    tool_lines = lines if tool_worker is None else json_lines_of(captures["worker"])
    (failure,) = [
        line
        for line in tool_lines
        if "tool broken_tool failed" in line["event"] and line["logger"].startswith("tools.")
    ]
    assert {k: failure.get(k) for k in ids} == ids
    assert (failure["call_id"], failure["tool"]) == (failed_call, "broken_tool")
    assert "RuntimeError: kaput" in failure["exception"]


# Celery's own log format, which the worker would use had it replaced our handler.
CELERY_FORMAT = re.compile(r"^\[\d{4}-\d\d-\d\d [^]]*: (DEBUG|INFO|WARNING|ERROR)/", re.MULTILINE)


def json_lines_of(text: str) -> list[dict[str, Any]]:
    """The worker's log lines (its banner and Python's warnings are printed, not logged)."""
    assert not CELERY_FORMAT.search(text), "the worker logs in Celery's format, not ours"
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
