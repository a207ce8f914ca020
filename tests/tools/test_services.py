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
from django.db import connections, transaction

from tests.factories import AgentFactory
from tests.tools.conftest import allow, make_session, make_webhook
from tools.models import AgentTool, OutboxEmail, Tool, ToolCallRecord
from tools.registry import ToolContext, get_tool, registry, tool, unregister
from tools.services import (
    agent_tool_update,
    tool_allowlist_for_agent,
    tool_call_admit,
    tool_call_enqueue,
    tool_call_execute,
    tool_call_finish_early,
    tool_call_response,
    tool_declarations_for_agent,
    tool_sync_registry,
)
from tools.tool_threads import tool_threads
from voice_platform.tenancy.scope import tenant_scope

EMAIL = {"to": "bob@example.com", "subject": "Hi", "body": "the secret body"}


def admit(session, agent, name, args, call_id="c1"):
    with tenant_scope(agent.tenant_id):
        return tool_call_admit(session=session, agent=agent, call_id=call_id, name=name, args=args)


def execute(record):
    with tenant_scope(record.tenant_id):
        return tool_call_execute(record_id=record.pk)


def execute_in_thread(record) -> None:
    """``execute`` from a thread of the test's own, which must hand its connection back (a
    connection left open keeps the test database from being dropped at the end)."""
    try:
        execute(record)
    finally:
        connections.close_all()


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


def test_tool_call_admit_accepts_with_redacted_audit_and_encrypted_pending_args(
    alice_agent, alice_session
):
    allow(
        alice_agent, "send_email", timeout_seconds=3.5, policy={"allowed_domains": ["example.com"]}
    )
    admission = admit(alice_session, alice_agent, "send_email", EMAIL)
    assert admission.accepted
    assert admission.reason == ""
    assert admission.timeout == 3.5
    assert (admission.behavior, admission.scheduling) == ("BLOCKING", None)
    record = ToolCallRecord.unscoped.get(pk=admission.record.pk)
    assert record.status == "queued"
    assert record.queued_at is not None
    assert record.arguments == {**EMAIL, "body": "[redacted]"}
    assert record.pending_arguments
    assert "the secret body" not in record.pending_arguments
    assert record.session_ref == alice_session.pk
    assert record.end_user_id == alice_session.end_user_id


def test_tool_call_admit_uses_tool_default_timeout_and_non_blocking_scheduling(
    alice_agent, alice_session, scratch_tools
):
    allow(alice_agent, "t_background")
    admission = admit(alice_session, alice_agent, "t_background", {})
    assert admission.timeout == get_tool("t_background").timeout
    assert (admission.behavior, admission.scheduling) == ("NON_BLOCKING", "INTERRUPT")


def test_tool_call_admit_is_idempotent_per_session_and_call_id(alice_agent, alice_session):
    allow(alice_agent, "get_current_time")
    first = admit(alice_session, alice_agent, "get_current_time", {"timezone": "UTC"})
    again = admit(alice_session, alice_agent, "get_current_time", {"timezone": "UTC"})
    rejected = admit(alice_session, alice_agent, "nope", {}, call_id="c2")
    rejected_again = admit(alice_session, alice_agent, "nope", {}, call_id="c2")
    assert again.record.pk == first.record.pk
    assert again.accepted
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
    assert good.record.is_webhook
    assert good.timeout == webhook.timeout_seconds


# --- enqueue ---------------------------------------------------------------------------------


def test_tool_call_enqueue_sends_once_on_commit(
    alice_agent, alice_session, django_capture_on_commit_callbacks, settings
):
    from tools.tasks import tool_call_execute_task

    allow(alice_agent, "get_current_time")
    record = admit(alice_session, alice_agent, "get_current_time", {"timezone": "UTC"}).record
    with (
        mock.patch.object(tool_call_execute_task, "apply_async") as send,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        tenant_scope(record.tenant_id),
    ):
        task_id = tool_call_enqueue(record=record)
        assert send.call_count == 0  # only after commit
        second = tool_call_enqueue(record=record)
    assert second == task_id
    assert len(callbacks) == 1
    send.assert_called_once_with(
        kwargs={"tenant_id": record.tenant_id, "record_id": record.pk},
        task_id=task_id,
        queue=settings.TOOL_CELERY_QUEUE,
    )
    assert ToolCallRecord.unscoped.get(pk=record.pk).celery_task_id == task_id


# --- execution (threads need committed data: transactional tests) ----------------------------

transactional = pytest.mark.django_db(transaction=True)


@transactional
def test_tool_call_execute_runs_once_side_effect_once(alice_agent, alice_session, synced_tools):
    allow(alice_agent, "send_email")
    record = admit(alice_session, alice_agent, "send_email", EMAIL).record
    done = execute(record)
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
        record.pk,
        alice_agent.tenant_id,
    )
    again = execute(record)  # a redelivered task
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
    record = admit(alice_session, alice_agent, "lookup_record", {"key": "vip"}).record
    assert execute(record).result == {"found": False, "key": "vip"}


@transactional
def test_tool_call_execute_tool_exception_becomes_failed_record(
    alice_agent, alice_session, scratch_tools
):
    allow(alice_agent, "t_boom")
    allow(alice_agent, "t_not_a_dict")
    boom = execute(admit(alice_session, alice_agent, "t_boom", {}).record)
    assert boom.status == "failed"
    assert boom.error == "RuntimeError: disk on fire"
    assert tool_call_response(record=boom) == {"error": "RuntimeError: disk on fire"}
    assert "Traceback" not in boom.error
    listy = execute(admit(alice_session, alice_agent, "t_not_a_dict", {}, call_id="c2").record)
    assert listy.status == "failed"
    assert listy.error == "TypeError: tool returned list, not an object"


@transactional
def test_tool_call_execute_timeout_discards_late_side_effects(
    alice_agent, alice_session, scratch_tools
):
    allow(alice_agent, "t_slow_mail")
    record = admit(alice_session, alice_agent, "t_slow_mail", {"seconds": 0.8}).record
    started = time.monotonic()
    done = execute(record)
    assert time.monotonic() - started < 0.8  # returned at the timeout, not when the tool did
    assert done.status == "timeout"
    assert tool_call_response(record=done) == {"error": "tool timed out after 0.3s"}
    assert scratch_tools["finished"].wait(5)
    join_tool_threads()
    assert not OutboxEmail.unscoped.exists()  # written after the deadline: rolled back
    assert ToolCallRecord.unscoped.get(pk=record.pk).status == "timeout"


@transactional
def test_tool_call_cancel_while_running_rolls_back_and_keeps_cancelled(
    alice_agent, alice_session, scratch_tools
):
    allow(alice_agent, "t_gated_mail")
    record = admit(alice_session, alice_agent, "t_gated_mail", {}).record
    runner = threading.Thread(target=execute_in_thread, args=(record,))
    runner.start()
    deadline = time.monotonic() + 5
    while ToolCallRecord.unscoped.get(pk=record.pk).status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with tenant_scope(record.tenant_id):
        assert tool_call_finish_early(record_id=record.pk, status="cancelled")
    scratch_tools["release"].set()
    runner.join(5)
    join_tool_threads()
    final = ToolCallRecord.unscoped.get(pk=record.pk)
    assert final.status == "cancelled"
    assert tool_call_response(record=final) == {"error": "cancelled"}
    assert not OutboxEmail.unscoped.exists()


def test_tool_call_finish_early_before_start_means_never_run(alice_agent, alice_session):
    allow(alice_agent, "send_email")
    record = admit(alice_session, alice_agent, "send_email", EMAIL).record
    with tenant_scope(record.tenant_id):
        assert tool_call_finish_early(record_id=record.pk, status="timeout")
        assert not tool_call_finish_early(record_id=record.pk, status="cancelled")
        assert tool_call_execute(record_id=record.pk).status == "timeout"
    assert not OutboxEmail.unscoped.exists()
    final = ToolCallRecord.unscoped.get(pk=record.pk)
    assert final.error == "tool timed out after 5s"
    assert final.pending_arguments == ""


def test_tool_call_finish_early_does_not_touch_finished_records(alice_agent, alice_session):
    record = admit(alice_session, alice_agent, "nope", {}).record
    with tenant_scope(record.tenant_id):
        assert not tool_call_finish_early(record_id=record.pk, status="cancelled")
    assert ToolCallRecord.unscoped.get(pk=record.pk).status == "rejected"


def test_tool_call_cancel_revokes_celery_task(alice_agent, alice_session, settings):
    settings.TOOL_EXECUTION = "celery"
    allow(alice_agent, "get_current_time")
    record = admit(alice_session, alice_agent, "get_current_time", {"timezone": "UTC"}).record
    ToolCallRecord.unscoped.filter(pk=record.pk).update(celery_task_id="task-123")
    from voice_platform.celery import app

    with mock.patch.object(app.control, "revoke") as revoke, tenant_scope(record.tenant_id):
        assert tool_call_finish_early(record_id=record.pk, status="cancelled")
    revoke.assert_called_once_with("task-123")


@transactional
def test_tool_result_notify_wakes_the_sessions_current_channel(
    alice_agent, alice_session, synced_tools
):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    alice_session.connection_channel = channel
    alice_session.save()
    allow(alice_agent, "get_current_time")
    record = admit(alice_session, alice_agent, "get_current_time", {"timezone": "UTC"}).record
    done = execute(record)
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


def test_tool_call_admit_duplicate_keeps_first_row_and_gives_back_its_rate_slot(
    alice_agent, alice_session
):
    allow(alice_agent, "get_current_time", rate_limit="2/min")
    first = admit(alice_session, alice_agent, "get_current_time", {"timezone": "UTC"})
    # The insert hits the unique constraint (no lookup first): the first row answers.
    with transaction.atomic():
        again = admit(alice_session, alice_agent, "get_current_time", {"timezone": "UTC"})
    assert again.record.pk == first.record.pk
    assert again.accepted
    assert ToolCallRecord.unscoped.count() == 1
    # The repeat's slot was given back: a second real call still fits 2/min.
    other = admit(alice_session, alice_agent, "get_current_time", {"timezone": "UTC"}, "c2")
    assert other.accepted
    third = admit(alice_session, alice_agent, "get_current_time", {"timezone": "UTC"}, "c3")
    assert not third.accepted
    assert "rate limit" in third.reason


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
    done = execute(admission.record)
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
    done = execute(admission.record)
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
    assert admission.record.timeout_seconds == 3
    again = admit_with(
        admission.allowlist, alice_session, "get_current_time", {"timezone": "UTC"}, "c2"
    )
    assert not again.accepted
    assert "rate limit" in again.reason


def test_claim_reads_the_row_exactly_as_the_orm_does(alice_agent, alice_session):
    from tools import services

    allow(alice_agent, "send_email", policy={"allowed_domains": ["example.com"]})
    record = admit(alice_session, alice_agent, "send_email", EMAIL).record
    alice_session.connection_channel = "specific.abc!def"
    alice_session.save()
    with tenant_scope(record.tenant_id):
        claimed, started = services._claim(record.pk)
        again, started_again = services._claim(record.pk)
    assert started
    assert not started_again  # claimed once only
    assert again.status == "running"
    stored = ToolCallRecord.unscoped.select_related("agent_tool").get(pk=record.pk)
    for field in services._RUN_FIELDS:  # same values and types (UUIDs, datetimes, bools)
        assert getattr(claimed, field.attname) == getattr(stored, field.attname), field.name
        assert type(getattr(claimed, field.attname)) is type(getattr(stored, field.attname))
    assert claimed.status == "running"
    assert claimed.agent_tool.enabled is True
    assert claimed.agent_tool.policy == stored.agent_tool.policy
    assert claimed.agent_tool.webhook_tool_id is None
    assert claimed.claim_channel == "specific.abc!def"
