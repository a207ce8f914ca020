"""Tool calls end to end: emulator toolCall -> bridge -> tools services -> Celery (or a
thread) -> result from the database -> toolResponse -> the model's next reply."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async

from tests.factories import AgentFactory
from tests.sessions.conftest import issue_token, open_client, tone
from tools.models import AgentTool, OutboxEmail, ToolCallRecord
from tools.services import agent_tool_create, agent_tool_update
from voice_platform.tenancy.scope import tenant_scope

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def agent_with(tenant, tools: dict[str, dict], **kwargs):
    agent = AgentFactory(tenant=tenant, response_modality=kwargs.pop("modality", "TEXT"), **kwargs)
    with tenant_scope(tenant.pk):
        for name, fields in tools.items():
            agent_tool_create(tenant=tenant, agent=agent, tool_name=name, **fields)
    return agent


@database_sync_to_async
def records():
    return list(ToolCallRecord.unscoped.order_by("id"))


async def started_client(agent):
    client = await open_client(f"token={await issue_token(agent)}")
    await client.until("session.started")
    return client


async def call(client, *lines: str) -> None:
    await client.send(type="text", text="\n".join(lines))


async def close(client) -> None:
    await client.send(type="close")
    await client.until_closed()


async def test_tool_allowed_call_runs_and_the_reply_uses_its_result(alice, tools_ready):
    agent = await agent_with(alice.tenant, {"get_current_time": {}})
    client = await started_client(agent)
    await call(client, 'call get_current_time {"timezone": "Europe/Berlin"}')
    finished = await client.until("tool.finished")
    await client.until("turn_complete")
    (record,) = await records()
    assert record.status == "succeeded"
    assert finished == {"type": "tool.finished", "call_id": record.call_id,
                        "name": "get_current_time", "status": "ok"}  # fmt: skip
    assert client.of("tool.started")[0]["call_id"] == record.call_id
    # The model got what was stored (JSONB may order the keys differently).
    prefix, _, answer = client.texts("text").partition(": ")
    assert prefix == "Result of get_current_time"
    assert json.loads(answer) == record.result
    assert record.result["timezone"] == "Europe/Berlin"
    await close(client)


def disable_all(agent) -> None:
    with tenant_scope(agent.tenant_id):
        for entry in AgentTool.objects.filter(agent=agent):
            agent_tool_update(agent_tool=entry, enabled=False)


async def test_tool_not_allowlisted_is_refused_and_audited(alice, tools_ready):
    agent = await agent_with(alice.tenant, {"get_current_time": {}})
    client = await started_client(agent)  # declared at setup, then taken off the list
    await database_sync_to_async(disable_all)(agent)  # as the admin or REST would
    await call(client, 'call get_current_time {"timezone": "UTC"}')
    finished = await client.until("tool.finished")
    await client.until("turn_complete")
    assert finished["status"] == "rejected"
    assert not client.of("tool.started")
    (record,) = await records()
    assert record.status == "rejected"
    assert "not allowlisted" in record.rejection_reason
    assert record.rejection_reason in client.texts("text")
    await close(client)


@pytest.mark.parametrize(
    ("line", "tools", "reason_part"),
    [
        ('call get_current_time {"timezone": "Mars/Olympus"}', {"get_current_time": {}},
         "timezone"),
        ('call send_email {"to": "bob@evil.com", "subject": "hi", "body": "secret"}',
         {"send_email": {"policy": {"allowed_domains": ["example.com"]}}}, "bob@evil.com"),
    ],
    ids=["invalid-arguments", "policy-violation"],
)  # fmt: skip
async def test_tool_bad_call_is_rejected_before_running(alice, tools_ready, line, tools,
                                                         reason_part):  # fmt: skip
    agent = await agent_with(alice.tenant, tools)
    client = await started_client(agent)
    await call(client, line)
    assert (await client.until("tool.finished"))["status"] == "rejected"
    await client.until("turn_complete")
    (record,) = await records()
    assert record.status == "rejected"
    assert reason_part in record.rejection_reason
    assert await database_sync_to_async(OutboxEmail.unscoped.count)() == 0
    await close(client)


async def test_tool_policy_allowed_recipient_sends_once_with_body_redacted(alice, tools_ready):
    agent = await agent_with(
        alice.tenant, {"send_email": {"policy": {"allowed_domains": ["example.com"]}}}
    )
    client = await started_client(agent)
    await call(
        client, 'call send_email {"to": "ann@example.com", "subject": "hi", "body": "s3cret"}'
    )
    assert (await client.until("tool.finished"))["status"] == "ok"
    await client.until("turn_complete")
    (record,) = await records()
    assert record.status == "succeeded"
    assert "s3cret" not in json.dumps(record.arguments)
    outbox = await database_sync_to_async(list)(OutboxEmail.unscoped.all())
    assert [(m.to, m.body) for m in outbox] == [("ann@example.com", "s3cret")]
    await close(client)


async def test_tool_rate_limit_per_end_user(alice, tools_ready):
    agent = await agent_with(alice.tenant, {"get_current_time": {"rate_limit": "1/min"}})
    client = await started_client(agent)
    for _ in range(2):
        await call(client, 'call get_current_time {"timezone": "UTC"}')
        await client.until("turn_complete")
    statuses = [e["status"] for e in client.of("tool.finished")]
    assert statuses == ["ok", "rejected"]
    assert [r.status for r in await records()] == ["succeeded", "rejected"]
    assert "rate limit" in (await records())[1].rejection_reason
    await close(client)


async def test_tool_timeout_answers_the_model_with_an_error(alice, tools_ready):
    agent = await agent_with(alice.tenant, {"slow_tool": {"timeout_seconds": 0.5}})
    client = await started_client(agent)
    await call(client, 'call slow_tool {"seconds": 3}')
    assert (await client.until("tool.finished"))["status"] == "timeout"
    await client.until("turn_complete")
    (record,) = await records()
    assert record.status == "timeout"
    assert "timed out" in client.texts("text")
    await close(client)


async def test_tool_exception_is_an_error_response_and_the_session_lives_on(alice, tools_ready):
    agent = await agent_with(alice.tenant, {"broken_tool": {}, "get_current_time": {}})
    client = await started_client(agent)
    await call(client, "call broken_tool {}")
    assert (await client.until("tool.finished"))["status"] == "error"
    await client.until("turn_complete")
    await call(client, 'call get_current_time {"timezone": "UTC"}')
    await client.until("turn_complete")
    assert [r.status for r in await records()] == ["failed", "succeeded"]
    assert "kaput" in (await records())[0].error
    await close(client)


async def test_tool_parallel_calls_run_side_by_side(alice, tools_ready):
    from conftest import require_postgres

    require_postgres()  # in-memory SQLite cannot hold two writers (CI runs PostgreSQL)
    agent = await agent_with(alice.tenant, {"slow_tool": {}})
    client = await started_client(agent)
    await call(client, 'call slow_tool {"seconds": 0.6}', 'call slow_tool {"seconds": 0.6}')
    await client.until("turn_complete")
    first, second = await records()
    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert first.call_id != second.call_id
    # Overlapping runs: the second started before the first finished.
    assert second.started_at < first.finished_at
    assert first.started_at < second.finished_at
    assert client.texts("text").count("Result of slow_tool") == 2
    await close(client)


async def test_tool_non_blocking_call_does_not_block_the_turn(alice, tools_ready):
    agent = await agent_with(alice.tenant, {"background_note": {}})
    client = await started_client(agent)
    await call(client, 'call background_note {"note": "milk"}')
    assert (await client.until("tool.finished"))["status"] == "ok"
    while "Result of background_note" not in client.texts("text"):
        await client.until("turn_complete")
    (record,) = await records()
    assert record.status == "succeeded"
    assert record.behavior == "NON_BLOCKING"
    await close(client)


@pytest.fixture
def live_emulator_settings():
    return {"pace": 5.0}


async def test_tool_cancelled_on_barge_in(alice, tools_ready, live_emulator):
    agent = await agent_with(alice.tenant, {"slow_tool": {}}, modality="AUDIO")
    client = await started_client(agent)
    await call(client, 'call slow_tool {"seconds": 3}')
    await client.until("tool.started")
    for _ in range(3):
        await client.send_audio(tone(100))  # the user talks while the tool runs
    finished = await client.until("tool.finished")
    assert finished["status"] == "cancelled"
    (record,) = await records()
    assert record.status == "cancelled"
    assert live_emulator.recorder.last().tool_responses == []  # no answer to a withdrawn call
    await close(client)


async def test_tool_webhook_signed_call(alice, webhook_receiver, tools_ready):
    # webhook_receiver first: the worker inherits its allowlist and CA when it starts.
    from tests.tools.conftest import TEST_SECRET, verify_signature

    def answer(request):
        return 200, {"Content-Type": "application/json"}, b'{"order": "shipped"}'

    webhook_receiver.handler = answer
    webhook, agent = await webhook_agent(alice, webhook_receiver)
    client = await started_client(agent)
    await call(client, f"call {webhook.name} " + '{"order_id": "A-1"}')
    assert (await client.until("tool.finished"))["status"] == "ok"
    await client.until("turn_complete")
    (request,) = webhook_receiver.requests
    assert verify_signature(TEST_SECRET, request)
    assert json.loads(request["body"])["arguments"] == {"order_id": "A-1"}
    assert client.texts("text") == f'Result of {webhook.name}: {{"order":"shipped"}}'
    await close(client)


@database_sync_to_async
def webhook_agent(world, receiver, **fields):
    from tests.tools.conftest import make_webhook

    webhook = make_webhook(world.tenant, url=receiver.url(), **fields)
    agent = AgentFactory(tenant=world.tenant, response_modality="TEXT")
    with tenant_scope(world.tenant.pk):
        agent_tool_create(tenant=world.tenant, agent=agent, webhook_tool_id=webhook.pk)
    return webhook, agent


async def test_tool_webhook_to_private_address_is_refused(alice, tools_ready, webhook_receiver):
    tools_ready.TOOL_WEBHOOK_ALLOWED_NETWORKS = []  # loopback no longer allowlisted
    webhook, agent = await webhook_agent(alice, webhook_receiver)
    client = await started_client(agent)
    await call(client, f"call {webhook.name} " + '{"order_id": "A-1"}')
    assert (await client.until("tool.finished"))["status"] in {"error", "rejected"}
    await client.until("turn_complete")
    assert webhook_receiver.requests == []  # nothing left the platform
    (record,) = await records()
    assert "loopback" in (record.error + record.rejection_reason)
    await close(client)


async def test_tool_webhook_slow_endpoint_times_out(alice, webhook_receiver, tools_ready):
    import time

    def slow(request):
        time.sleep(2)
        return 200, {"Content-Type": "application/json"}, b"{}"

    webhook_receiver.handler = slow
    webhook, agent = await webhook_agent(alice, webhook_receiver, timeout_seconds=0.5)
    client = await started_client(agent)
    await call(client, f"call {webhook.name} " + '{"order_id": "A-1"}')
    assert (await client.until("tool.finished"))["status"] in {"timeout", "error"}
    await client.until("turn_complete")
    (record,) = await records()
    assert record.status in {"timeout", "failed"}
    assert "time" in (record.error + client.texts("text")).lower()
    await close(client)


async def test_tool_inprocess_mode_without_a_broker(alice, live_settings):
    """The embedded default (no REDIS_URL): a worker thread runs the tool, same path back."""
    from tools.services import tool_sync_registry

    await database_sync_to_async(tool_sync_registry)()
    live_settings.TOOL_EXECUTION = "inprocess"
    agent = await agent_with(alice.tenant, {"get_current_time": {}})
    client = await started_client(agent)
    await call(client, 'call get_current_time {"timezone": "UTC"}')
    assert (await client.until("tool.finished"))["status"] == "ok"
    await client.until("turn_complete")
    (record,) = await records()
    assert record.status == "succeeded"
    assert record.celery_task_id  # the run's id: no broker saw it
    await close(client)
