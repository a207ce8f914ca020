"""Admission, declarations, execution and the call lifecycle (services)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import SuspiciousOperation
from django.db import connections, transaction

from tests.factories import AgentFactory
from tests.tools.conftest import allow, make_session, make_webhook
from tools.models import AgentTool, OutboxEmail, Tool, ToolCallRecord
from tools.registry import ToolContext, get_tool, registry, tool, unregister
from tools.services import (
    PendingCall,
    agent_tool_delete,
    agent_tool_update,
    tool_allowlist_for_agent,
    tool_call_admit,
    tool_call_execute,
    tool_call_finish_early,
    tool_call_response,
    tool_call_start,
    tool_declarations_for_agent,
    tool_sync_registry,
)
from tools.tool_threads import tool_threads
from voice_platform.crypto import decrypt_str
from voice_platform.tenancy.scope import tenant_scope

EMAIL = {"to": "bob@example.com", "subject": "Hi", "body": "the secret body"}


def admit(session, agent, name, args, call_id="c1"):
    with tenant_scope(agent.tenant_id):
        return tool_call_admit(session=session, agent=agent, call_id=call_id, name=name, args=args)


def execute(admission):
    """Start and run an accepted call, as its worker does (a repeat: as a redelivery)."""
    with tenant_scope(admission.pending.tenant_id):
        return tool_call_execute(pending=admission.pending)


def execute_in_thread(admission) -> None:
    """``execute`` from a thread of the test's own, which must hand its connection back (a
    connection left open keeps the test database from being dropped at the end)."""
    try:
        execute(admission)
    finally:
        connections.close_all()


def finish_early(admission, status, **kwargs):
    pending = admission.pending
    with tenant_scope(pending.tenant_id):
        return tool_call_finish_early(
            session_ref=pending.session_ref, call_id=pending.call_id, status=status,
            pending=pending, **kwargs,
        )  # fmt: skip


@pytest.fixture
def scratch_tools(db):
    """Test-only tools; the Tool table is re-synced so they can be allowlisted."""
    before = set(registry())
    events = {"release": threading.Event(), "finished": threading.Event()}

    @tool(name="t_boom", description="Raises.")
    def boom(ctx: ToolContext) -> dict[str, Any]:
        raise RuntimeError("disk on fire")

    @tool(name="t_not_a_dict", description="Returns a list.")
    def not_a_dict(ctx: ToolContext) -> dict[str, Any]:
        return [1, 2]  # type: ignore[return-value]

    @tool(name="t_slow_mail", description="Sleeps, then writes.", timeout=0.3)
    def slow_mail(ctx: ToolContext, seconds: float) -> dict[str, Any]:
        time.sleep(seconds)
        OutboxEmail.objects.create(tenant=ctx.tenant, to="x@example.com", subject="s", body="b")
        events["finished"].set()
        return {"slept": seconds}

    @tool(name="t_gated_mail", description="Waits for the test, then writes.", timeout=5)
    def gated_mail(ctx: ToolContext) -> dict[str, Any]:
        events["started"] = True  # type: ignore[assignment]
        events["release"].wait(5)
        OutboxEmail.objects.create(tenant=ctx.tenant, to="x@example.com", subject="s", body="b")
        return {"done": True}

    @tool(name="t_background", description="Non-blocking.", behavior="NON_BLOCKING",
          scheduling="INTERRUPT")  # fmt: skip
    def background(ctx: ToolContext) -> dict[str, Any]:
        return {"ok": True}

    tool_sync_registry()
    yield events
    for name in set(registry()) - before:
        unregister(name)


transactional = pytest.mark.django_db(transaction=True)


def join_tool_threads(timeout: float = 5) -> None:
    assert tool_threads.wait_idle(timeout)


# --- registry sync ---------------------------------------------------------------------------


def test_tool_sync_registry_mirrors_code_and_marks_missing_unavailable(db):
    report = tool_sync_registry()
    assert set(report.created) | set(report.updated) == set(registry())
    row = Tool.objects.get(name="send_email")
    assert row.available
    assert row.sensitive_args == ["body"]
    assert row.policy_schema == get_tool("send_email").policy_schema()
    Tool.objects.create(name="gone_tool", synced_at=row.synced_at)
    report = tool_sync_registry()
    assert report.unavailable == ["gone_tool"]
    assert not Tool.objects.get(name="gone_tool").available


def test_tool_sync_command_reports(db, capsys):
    from django.core.management import call_command

    call_command("tools_sync")
    assert f"updated {len(registry())}" in capsys.readouterr().out


# --- declarations ----------------------------------------------------------------------------


def test_tool_declarations_for_agent_lists_exactly_enabled_available_tools(
    alice, alice_agent, scratch_tools
):
    allow(alice_agent, "get_current_time")
    allow(alice_agent, "send_email", enabled=False)
    allow(alice_agent, "t_background")
    on = make_webhook(alice.tenant, url="https://hooks.example.com/a", name="hook_on")
    off = make_webhook(alice.tenant, url="https://hooks.example.com/b", name="hook_off",
                       enabled=False)  # fmt: skip
    for webhook in (on, off):
        AgentTool.unscoped.create(tenant=alice.tenant, agent=alice_agent, webhook_tool=webhook)
    other_agent = AgentFactory(tenant=alice.tenant)
    allow(other_agent, "lookup_record")
    with tenant_scope(alice.tenant.pk):
        declarations = tool_declarations_for_agent(agent=alice_agent)
    by_name = {d.name: d for d in declarations}
    assert list(by_name) == ["get_current_time", "t_background", "hook_on"]
    assert by_name["hook_on"].parameters.required == ["order_id"]
    assert by_name["t_background"].behavior is not None
    unregister("t_background")  # the code no longer has it: no longer declared
    with tenant_scope(alice.tenant.pk):
        assert [d.name for d in tool_declarations_for_agent(agent=alice_agent)] == [
            "get_current_time",
            "hook_on",
        ]


# --- admission -------------------------------------------------------------------------------


def test_tool_call_admit_rejects_tool_not_allowlisted(alice_agent, alice_session):
    admission = admit(alice_session, alice_agent, "send_email", EMAIL)
    assert not admission.accepted
    assert admission.reason == "tool 'send_email' is not allowlisted for this agent"
    record = ToolCallRecord.unscoped.get()
    assert record.status == "rejected"
    assert record.rejection_reason == admission.reason
    assert record.finished_at is not None
    # Unknown tool, unknown sensitivity: names only.
    assert record.arguments == {key: "[redacted]" for key in EMAIL}
    assert tool_call_response(record=record) == {"error": admission.reason}


def test_tool_call_admit_rejects_disabled_entry_and_other_agents_entry(
    alice_agent, alice_session, alice
):
    allow(alice_agent, "send_email", enabled=False)
    allow(AgentFactory(tenant=alice.tenant), "get_current_time")
    assert "not allowlisted" in admit(alice_session, alice_agent, "send_email", EMAIL).reason
    assert (
        "not allowlisted"
        in admit(
            alice_session, alice_agent, "get_current_time", {"timezone": "UTC"}, call_id="c2"
        ).reason
    )


def test_tool_call_admit_rejects_tool_missing_from_code(alice_agent, alice_session, scratch_tools):
    allow(alice_agent, "t_boom")
    unregister("t_boom")
    admission = admit(alice_session, alice_agent, "t_boom", {})
    assert admission.reason == "tool 't_boom' is not allowlisted for this agent"


def test_tool_call_admit_rejects_bad_arguments_naming_the_field(alice_agent, alice_session):
    allow(alice_agent, "send_email")
    admission = admit(alice_session, alice_agent, "send_email", {**EMAIL, "to": "nope"})
    assert not admission.accepted
    assert admission.reason.startswith("invalid argument 'to'")
    record = admission.record
    assert record.status == "rejected"
    assert record.arguments["body"] == "[redacted]"
    assert record.pending_arguments == ""


def test_tool_call_admit_rejects_by_policy(alice_agent, alice_session):
    allow(alice_agent, "send_email", policy={"allowed_domains": ["example.com"]})
    admission = admit(alice_session, alice_agent, "send_email", {**EMAIL, "to": "bob@evil.com"})
    assert admission.reason == "recipient bob@evil.com is not allowed by policy"
    assert admission.record.status == "rejected"


def test_tool_call_admit_fails_closed_on_invalid_stored_policy(alice_agent, alice_session):
    entry = allow(alice_agent, "send_email")
    AgentTool.unscoped.filter(pk=entry.pk).update(policy={"allowed_domains": "not-a-list"})
    admission = admit(alice_session, alice_agent, "send_email", EMAIL)
    assert not admission.accepted
    assert "policy of tool 'send_email' is invalid" in admission.reason


def test_tool_call_admit_rate_limits_per_end_user(alice_agent, alice):
    allow(alice_agent, "get_current_time", rate_limit="2/min")
    session = make_session(alice_agent, end_user_id="rl-user")
    other = make_session(alice_agent, end_user_id="rl-other")
    args = {"timezone": "UTC"}
    results = [admit(session, alice_agent, "get_current_time", args, f"c{i}") for i in range(3)]
    assert [a.accepted for a in results] == [True, True, False]
    assert results[2].reason == "rate limit 2/min exceeded for tool 'get_current_time'"
    assert admit(other, alice_agent, "get_current_time", args, "o1").accepted


@transactional
def test_tool_call_admit_accepts_with_redacted_audit_and_encrypted_arguments(
    alice_agent, alice_session, synced_tools
):
    allow(
        alice_agent, "send_email", timeout_seconds=3.5, policy={"allowed_domains": ["example.com"]}
    )
    admission = admit(alice_session, alice_agent, "send_email", EMAIL)
    assert admission.accepted
    assert admission.reason == ""
    assert admission.timeout == 3.5
    assert (admission.behavior, admission.scheduling) == ("BLOCKING", None)
    assert admission.record is None
    assert not ToolCallRecord.unscoped.exists()  # written when it starts
    pending = admission.pending
    assert pending.arguments == {**EMAIL, "body": "[redacted]"}
    assert "the secret body" not in json.dumps(pending.as_message())
    assert json.loads(decrypt_str(pending.sealed_arguments)) == EMAIL
    assert pending.task_id
    # The task message is JSON and comes back as the same call.
    assert PendingCall.from_message(json.loads(json.dumps(pending.as_message()))) == pending
    record = execute(admission)
    stored = ToolCallRecord.unscoped.get()
    assert stored.pk == record.pk
    assert stored.status == "succeeded"
    assert stored.queued_at <= stored.started_at <= stored.finished_at
    assert stored.arguments == {**EMAIL, "body": "[redacted]"}
    assert stored.pending_arguments == ""
    assert stored.session_ref == alice_session.pk
    assert stored.session_id == alice_session.pk
    assert stored.end_user_id == alice_session.end_user_id
    assert stored.celery_task_id == pending.task_id
    assert (stored.timeout_seconds, stored.behavior) == (3.5, "BLOCKING")


def test_tool_call_admit_uses_tool_default_timeout_and_non_blocking_scheduling(
    alice_agent, alice_session, scratch_tools
):
    allow(alice_agent, "t_background")
    admission = admit(alice_session, alice_agent, "t_background", {})
    assert admission.timeout == get_tool("t_background").timeout
    assert (admission.behavior, admission.scheduling) == ("NON_BLOCKING", "INTERRUPT")


@transactional
def test_tool_call_admit_is_idempotent_per_session_and_call_id(
    alice_agent, alice_session, synced_tools
):
    allow(alice_agent, "get_current_time")
    first = admit(alice_session, alice_agent, "get_current_time", {"timezone": "UTC"})
    waiting = admit(alice_session, alice_agent, "get_current_time", {"timezone": "UTC"})
    # Not started yet: the repeat waits for the first admission's row, and queues nothing.
    assert waiting.accepted
    assert (waiting.record, waiting.pending) == (None, None)
    assert waiting.timeout == first.timeout
    done = execute(first)
    again = admit(alice_session, alice_agent, "get_current_time", {"timezone": "UTC"})
    assert again.accepted
    assert again.record.pk == done.pk  # once written, the first row answers
    assert again.pending is None
    rejected = admit(alice_session, alice_agent, "nope", {}, call_id="c2")
    rejected_again = admit(alice_session, alice_agent, "nope", {}, call_id="c2")
    assert rejected_again.record.pk == rejected.record.pk
    assert rejected_again.reason == rejected.reason
    assert ToolCallRecord.unscoped.count() == 2


def test_tool_call_admit_webhook_tool_validates_json_schema(alice, alice_agent, alice_session):
    webhook = make_webhook(alice.tenant, url="https://hooks.example.com/x")
    AgentTool.unscoped.create(tenant=alice.tenant, agent=alice_agent, webhook_tool=webhook)
    bad = admit(alice_session, alice_agent, "order_status", {"order_id": 5})
    assert bad.reason == "invalid argument 'order_id': 5 is not of type 'string'"
    missing = admit(alice_session, alice_agent, "order_status", {}, call_id="c2")
    assert missing.reason == "invalid arguments: 'order_id' is a required property"
    good = admit(alice_session, alice_agent, "order_status", {"order_id": "A1"}, call_id="c3")
    assert good.accepted
    assert good.pending.is_webhook
    assert good.timeout == webhook.timeout_seconds


# --- enqueue ---------------------------------------------------------------------------------


def test_tool_call_admit_with_enqueue_sends_the_call_to_the_tool_queue(
    alice_agent, alice_session, settings
):
    from tools.tasks import tool_call_execute_task

    allow(alice_agent, "get_current_time")
    with (
        mock.patch("tools.services.publish_task") as send,
        tenant_scope(alice_agent.tenant_id),
    ):
        admission = tool_call_admit(
            session=alice_session, agent=alice_agent, call_id="c1", name="get_current_time",
            args={"timezone": "UTC"}, enqueue=True,
        )  # fmt: skip
    pending = admission.pending
    send.assert_called_once_with(
        tool_call_execute_task,
        task_id=pending.task_id,
        kwargs={"tenant_id": alice_agent.tenant_id, "call": pending.as_message()},
        queue=settings.TOOL_CELERY_QUEUE,
        kwargsrepr=f"{{'tenant_id': {alice_agent.tenant_id}, 'call': <get_current_time 'c1'>}}",
    )
    assert not ToolCallRecord.unscoped.exists()  # the worker writes it


def test_tool_call_admit_with_broker_down_fails_the_call_in_one_record(alice_agent, alice_session):
    allow(alice_agent, "get_current_time")
    refused = ConnectionError("broker down")
    with (
        mock.patch("tools.services.publish_task", side_effect=refused),
        tenant_scope(alice_agent.tenant_id),
    ):
        admission = tool_call_admit(
            session=alice_session, agent=alice_agent, call_id="c1", name="get_current_time",
            args={"timezone": "UTC"}, enqueue=True,
        )  # fmt: skip
    record = ToolCallRecord.unscoped.get()
    assert admission.record.pk == record.pk
    assert record.status == "failed"
    assert record.error == "could not queue the call: ConnectionError: broker down"
    assert tool_call_response(record=record) == {"error": record.error}


# --- execution (threads need committed data: transactional tests) ----------------------------


@transactional
def test_tool_call_execute_runs_once_side_effect_once(alice_agent, alice_session, synced_tools):
    allow(alice_agent, "send_email")
    admission = admit(alice_session, alice_agent, "send_email", EMAIL)
    done = execute(admission)
    assert done.status == "succeeded"
    assert done.result["outbox_id"] == OutboxEmail.unscoped.get().pk
    assert json.loads(done.result_preview) == done.result
    assert done.pending_arguments == ""
    assert done.started_at is not None
    assert done.finished_at >= done.started_at
    assert done.duration_ms is not None
    email = OutboxEmail.unscoped.get()
    assert (email.body, email.tool_call_id, email.tenant_id) == (
        "the secret body",
        done.pk,
        alice_agent.tenant_id,
    )
    again = execute(admission)  # a redelivered task
    assert again.status == "succeeded"
    assert again.finished_at == done.finished_at
    assert OutboxEmail.unscoped.count() == 1
    assert tool_call_response(record=done) == done.result


@transactional
def test_tool_call_execute_lookup_record_is_tenant_isolated(
    alice, charlie, alice_agent, alice_session, synced_tools
):
    from tools.models import LookupRecord

    LookupRecord.unscoped.create(tenant=charlie.tenant, key="vip", value="charlie data")
    allow(alice_agent, "lookup_record")
    admission = admit(alice_session, alice_agent, "lookup_record", {"key": "vip"})
    assert execute(admission).result == {"found": False, "key": "vip"}


@transactional
def test_tool_call_execute_tool_exception_becomes_failed_record(
    alice_agent, alice_session, scratch_tools
):
    allow(alice_agent, "t_boom")
    allow(alice_agent, "t_not_a_dict")
    boom = execute(admit(alice_session, alice_agent, "t_boom", {}))
    assert boom.status == "failed"
    assert boom.error == "RuntimeError: disk on fire"
    assert tool_call_response(record=boom) == {"error": "RuntimeError: disk on fire"}
    assert "Traceback" not in boom.error
    listy = execute(admit(alice_session, alice_agent, "t_not_a_dict", {}, call_id="c2"))
    assert listy.status == "failed"
    assert listy.error == "TypeError: tool returned list, not an object"


@transactional
def test_tool_call_execute_timeout_discards_late_side_effects(
    alice_agent, alice_session, scratch_tools
):
    allow(alice_agent, "t_slow_mail")
    admission = admit(alice_session, alice_agent, "t_slow_mail", {"seconds": 0.8})
    started = time.monotonic()
    done = execute(admission)
    assert time.monotonic() - started < 0.8  # returned at the timeout, not when the tool did
    assert done.status == "timeout"
    assert tool_call_response(record=done) == {"error": "tool timed out after 0.3s"}
    assert scratch_tools["finished"].wait(5)
    join_tool_threads()
    assert not OutboxEmail.unscoped.exists()  # written after the deadline: rolled back
    assert ToolCallRecord.unscoped.get(pk=done.pk).status == "timeout"


@transactional
def test_tool_call_cancel_while_running_rolls_back_and_keeps_cancelled(
    alice_agent, alice_session, scratch_tools
):
    allow(alice_agent, "t_gated_mail")
    admission = admit(alice_session, alice_agent, "t_gated_mail", {})
    runner = threading.Thread(target=execute_in_thread, args=(admission,))
    runner.start()
    deadline = time.monotonic() + 5
    while not ToolCallRecord.unscoped.filter(status="running").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert finish_early(admission, "cancelled")
    scratch_tools["release"].set()
    runner.join(5)
    join_tool_threads()
    final = ToolCallRecord.unscoped.get()
    assert final.status == "cancelled"
    assert tool_call_response(record=final) == {"error": "cancelled"}
    assert not OutboxEmail.unscoped.exists()


def test_tool_call_finish_early_before_start_means_never_run(alice_agent, alice_session):
    allow(alice_agent, "send_email")
    admission = admit(alice_session, alice_agent, "send_email", EMAIL)
    assert finish_early(admission, "timeout")  # written from the pending call
    assert not finish_early(admission, "cancelled")
    assert execute(admission).status == "timeout"  # its worker, late: runs nothing
    assert not OutboxEmail.unscoped.exists()
    final = ToolCallRecord.unscoped.get()
    assert final.error == "tool timed out after 5s"
    assert (final.started_at, final.duration_ms) == (None, None)
    assert final.queue_ms is not None
    assert final.arguments == {**EMAIL, "body": "[redacted]"}
    assert final.celery_task_id == admission.pending.task_id


def test_tool_call_finish_early_does_not_touch_finished_records(alice_agent, alice_session):
    record = admit(alice_session, alice_agent, "nope", {}).record
    with tenant_scope(record.tenant_id):
        assert not tool_call_finish_early(
            session_ref=str(record.session_ref), call_id=record.call_id, status="cancelled"
        )
    assert ToolCallRecord.unscoped.get(pk=record.pk).status == "rejected"


def test_tool_call_cancel_revokes_celery_task(alice_agent, alice_session, settings):
    settings.TOOL_EXECUTION = "celery"
    allow(alice_agent, "get_current_time")
    admission = admit(alice_session, alice_agent, "get_current_time", {"timezone": "UTC"})
    from voice_platform.celery import app

    with mock.patch.object(app.control, "revoke") as revoke:
        assert finish_early(admission, "cancelled")
    revoke.assert_called_once_with(admission.pending.task_id)


@transactional
def test_tool_result_notify_wakes_the_sessions_current_channel(
    alice_agent, alice_session, synced_tools
):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    alice_session.connection_channel = channel
    alice_session.save()
    allow(alice_agent, "get_current_time")
    admission = admit(alice_session, alice_agent, "get_current_time", {"timezone": "UTC"})
    done = execute(admission)
    message = async_to_sync(layer.receive)(channel)
    stored = ToolCallRecord.unscoped.get(pk=done.pk)
    # A copy of what was committed, so the waiting call need not read the row back.
    assert message == {
        "type": "tool.result",
        "record_id": done.pk,
        "call_id": "c1",
        "status": "succeeded",
        "response": tool_call_response(record=stored),
    }
    assert message["response"]["timezone"] == "UTC"


def test_tool_call_response_for_each_status(alice_agent, alice_session):
    record = ToolCallRecord(timeout_seconds=2.5, rejection_reason="no", error="ValueError: x")
    expected = {
        "rejected": {"error": "no"},
        "failed": {"error": "ValueError: x"},
        "timeout": {"error": "tool timed out after 2.5s"},
        "cancelled": {"error": "cancelled"},
        "queued": {"error": "tool call is still queued"},
    }
    for status, response in expected.items():
        record.status = status
        assert tool_call_response(record=record) == response
    record.status, record.result = "succeeded", {"a": 1}
    assert tool_call_response(record=record) == {"a": 1}


@transactional
def test_a_repeated_call_is_counted_once_and_a_redelivery_too(
    alice_agent, alice_session, synced_tools
):
    allow(alice_agent, "get_current_time", rate_limit="3/min")
    utc = {"timezone": "UTC"}
    first = admit(alice_session, alice_agent, "get_current_time", utc)  # 1 of 3
    repeat = admit(alice_session, alice_agent, "get_current_time", utc)  # the same call
    assert repeat.accepted
    assert repeat.pending is None  # nothing more to run
    done = execute(first)
    assert execute(first).pk == done.pk  # the same task redelivered: runs nothing
    assert ToolCallRecord.unscoped.count() == 1
    for call_id in ("c2", "c3"):
        assert admit(alice_session, alice_agent, "get_current_time", utc, call_id).accepted
    fourth = admit(alice_session, alice_agent, "get_current_time", utc, "c4")
    assert not fourth.accepted
    assert "rate limit" in fourth.reason


@transactional
def test_a_repeat_admitted_after_its_marker_expired_gives_its_slot_back(
    alice_agent, alice_session, synced_tools
):
    from django.core.cache import cache

    from tools.services import admitted_marker_key

    allow(alice_agent, "get_current_time", rate_limit="2/min")
    utc = {"timezone": "UTC"}
    done = execute(admit(alice_session, alice_agent, "get_current_time", utc))  # 1 of 2
    cache.delete(admitted_marker_key(str(alice_session.pk), "c1"))  # as after its TTL
    late = admit(alice_session, alice_agent, "get_current_time", utc)  # 2 of 2 ...
    assert late.pending is not None
    assert execute(late).pk == done.pk  # ... its task finds the row: given back
    assert admit(alice_session, alice_agent, "get_current_time", utc, "c2").accepted
    assert not admit(alice_session, alice_agent, "get_current_time", utc, "c3").accepted


def test_a_repeat_over_the_rate_limit_does_not_refuse_the_first_call(alice_agent, alice_session):
    allow(alice_agent, "get_current_time", rate_limit="1/min")
    first = admit(alice_session, alice_agent, "get_current_time", {"timezone": "UTC"})
    repeat = admit(alice_session, alice_agent, "get_current_time", {"timezone": "UTC"})
    assert first.accepted
    assert repeat.accepted  # not "rate limit exceeded": it is the same call
    assert not ToolCallRecord.unscoped.exists()  # and no refusal was written for it


def test_a_broker_failure_never_fails_a_started_call(alice_agent, alice_session):
    allow(alice_agent, "get_current_time")
    admission = admit(alice_session, alice_agent, "get_current_time", {"timezone": "UTC"})
    with tenant_scope(alice_agent.tenant_id):
        tool_call_start(admission.pending)
    assert not finish_early(admission, "failed", error="could not queue the call")
    assert ToolCallRecord.unscoped.get().status == "running"


@transactional
def test_a_forged_or_altered_task_message_is_not_run(alice_agent, alice_session, synced_tools):
    allow(alice_agent, "send_email")
    pending = admit(alice_session, alice_agent, "send_email", EMAIL).pending
    message = pending.as_message()
    for change in ({"call_id": "c-replayed"}, {"tenant_id": 999}, {"signature": "0" * 64}):
        with pytest.raises(SuspiciousOperation):
            PendingCall.from_message({**message, **change})
    unsigned = {k: v for k, v in message.items() if k != "signature"}
    with pytest.raises(SuspiciousOperation):
        PendingCall.from_message(unsigned)
    assert PendingCall.from_message(message) == pending
    assert not OutboxEmail.unscoped.exists()


def test_a_rejected_repeat_keeps_the_first_row(alice_agent, alice_session):
    # The insert meets the unique constraint (no lookup first): the first row answers.
    first = admit(alice_session, alice_agent, "nope", {})
    with transaction.atomic():
        again = admit(alice_session, alice_agent, "nope", {})
    assert again.record.pk == first.record.pk
    assert not again.accepted
    assert ToolCallRecord.unscoped.count() == 1


def admit_with(allowlist, session, name, args, call_id):
    with tenant_scope(allowlist.agent.tenant_id):
        return tool_call_admit(
            session=session, agent=allowlist.agent, call_id=call_id, name=name, args=args,
            allowlist=allowlist,
        )  # fmt: skip


def test_session_allowlist_reloads_after_an_entry_changes(alice_agent, alice_session):
    entry = allow(alice_agent, "send_email", policy={"allowed_domains": ["example.com"]})
    with tenant_scope(alice_agent.tenant_id):
        allowlist = tool_allowlist_for_agent(agent=alice_agent)
    first = admit_with(allowlist, alice_session, "send_email", EMAIL, "c1")
    assert first.accepted
    assert first.allowlist is allowlist
    with tenant_scope(alice_agent.tenant_id):
        agent_tool_update(agent_tool=entry, policy={"allowed_domains": ["example.org"]})
    second = admit_with(allowlist, alice_session, "send_email", EMAIL, "c2")
    assert not second.accepted
    assert "bob@example.com" in second.reason
    assert second.allowlist is not allowlist
    with tenant_scope(alice_agent.tenant_id):
        agent_tool_update(agent_tool=entry, enabled=False)
    third = admit_with(second.allowlist, alice_session, "send_email", EMAIL, "c3")
    assert not third.accepted
    assert "not allowlisted" in third.reason


def test_entry_disabled_behind_the_signals_back_is_refused_when_the_call_runs(
    alice_agent, alice_session
):
    allow(alice_agent, "send_email", policy={"allowed_domains": ["example.com"]})
    with tenant_scope(alice_agent.tenant_id):
        allowlist = tool_allowlist_for_agent(agent=alice_agent)
    AgentTool.unscoped.filter(agent=alice_agent).update(enabled=False)  # no version bump
    admission = admit_with(allowlist, alice_session, "send_email", EMAIL, "c1")
    assert admission.accepted  # the stale copy admits it ...
    done = execute(admission)
    assert done.status == "failed"  # ... but it never runs
    assert "no longer allowlisted" in done.error
    assert not OutboxEmail.unscoped.exists()


def test_policy_tightened_behind_the_signals_back_is_enforced_when_the_call_runs(
    alice_agent, alice_session
):
    allow(alice_agent, "send_email", policy={"allowed_domains": ["example.com"]})
    with tenant_scope(alice_agent.tenant_id):
        allowlist = tool_allowlist_for_agent(agent=alice_agent)
    AgentTool.unscoped.filter(agent=alice_agent).update(policy={"allowed_domains": ["x.org"]})
    admission = admit_with(allowlist, alice_session, "send_email", EMAIL, "c1")
    done = execute(admission)
    assert done.status == "failed"
    assert "bob@example.com" in done.error
    assert not OutboxEmail.unscoped.exists()


def test_reload_after_a_change_does_not_count_the_call_twice(alice_agent, alice_session):
    entry = allow(alice_agent, "get_current_time", rate_limit="1/min")
    with tenant_scope(alice_agent.tenant_id):
        allowlist = tool_allowlist_for_agent(agent=alice_agent)
        agent_tool_update(agent_tool=entry, timeout_seconds=3)  # the copy is now stale
    admission = admit_with(allowlist, alice_session, "get_current_time", {"timezone": "UTC"}, "c1")
    # Counted against the stale copy, given back, counted again after the reload: once.
    assert admission.accepted
    assert admission.pending.timeout_seconds == 3
    again = admit_with(
        admission.allowlist, alice_session, "get_current_time", {"timezone": "UTC"}, "c2"
    )
    assert not again.accepted
    assert "rate limit" in again.reason


def test_start_writes_the_row_exactly_as_the_orm_reads_it(alice_agent, alice_session):
    from tools import services

    allow(alice_agent, "send_email", policy={"allowed_domains": ["example.com"]})
    admission = admit(alice_session, alice_agent, "send_email", EMAIL)
    alice_session.connection_channel = "specific.abc!def"
    alice_session.save()
    with tenant_scope(alice_agent.tenant_id):
        started, ok = services.tool_call_start(admission.pending)
        again, ok_again = services.tool_call_start(admission.pending)
    assert ok
    assert not ok_again  # started once only
    assert again.pk == started.pk
    assert again.status == "running"
    stored = ToolCallRecord.unscoped.select_related("agent_tool").get()
    for field in ToolCallRecord._meta.concrete_fields:  # same values and types
        assert getattr(started, field.attname) == getattr(stored, field.attname), field.name
        assert type(getattr(started, field.attname)) is type(getattr(stored, field.attname))
    assert started.agent_tool.enabled is True
    assert started.agent_tool.policy == stored.agent_tool.policy
    assert started.agent_tool.webhook_tool_id is None
    assert started.claim_channel == "specific.abc!def"


@transactional
def test_a_call_whose_entry_was_deleted_before_it_started_fails_in_one_record(
    alice_agent, alice_session, synced_tools
):
    entry = allow(alice_agent, "send_email")
    admission = admit(alice_session, alice_agent, "send_email", EMAIL)
    with tenant_scope(alice_agent.tenant_id):
        agent_tool_delete(agent_tool=entry)
    done = execute(admission)
    assert done.status == "failed"
    assert "no longer allowlisted" in done.error
    stored = ToolCallRecord.unscoped.get()
    assert (stored.agent_tool_id, done.agent_tool_id) == (None, None)  # as SET_NULL does
    assert stored.agent_id == alice_agent.pk
    assert not OutboxEmail.unscoped.exists()


@transactional
def test_a_call_finished_early_after_its_session_was_deleted_still_names_it(
    alice_agent, alice_session
):
    allow(alice_agent, "get_current_time")
    admission = admit(alice_session, alice_agent, "get_current_time", {"timezone": "UTC"})
    session_id = alice_session.pk
    with tenant_scope(alice_agent.tenant_id):
        alice_session.delete()
    assert finish_early(admission, "timeout")
    stored = ToolCallRecord.unscoped.get()
    assert stored.status == "timeout"
    assert stored.session_id is None
    assert stored.session_ref == session_id
