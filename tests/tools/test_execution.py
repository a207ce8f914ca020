"""Execution: an accepted call runs once, bounded by its timeout, in a bounded pool.

Tools run in threads with connections of their own, which see committed rows only: these
tests are transactional.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import connections
from django.utils import timezone

from tests.tools.conftest import admit_call, allow, execute, make_session
from tools import execution
from tools.allowlist import tool_allowlist_for_agent
from tools.execution import tool_call_run_inprocess
from tools.models import AgentTool, LookupRecord, OutboxEmail, ToolCallRecord
from tools.notify import tool_results_group
from tools.outcome import tool_call_finish_early, tool_call_outcome, tool_call_response
from tools.services import agent_tool_delete
from voice_platform.tenancy.scope import tenant_scope

EMAIL = {"to": "bob@example.com", "subject": "Hi", "body": "the secret body"}
UTC = {"timezone": "UTC"}

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("tool_threads")]


def fresh(record) -> ToolCallRecord:
    return ToolCallRecord.unscoped.get(pk=record.pk)


def test_tool_call_execute_runs_once_side_effect_once(alice_agent, alice_session, synced_tools):
    allow(alice_agent, "send_email")
    queued = admit_call(alice_session, "send_email", EMAIL).record
    done = execute(queued)
    stored = fresh(queued)
    assert stored.status == done.status == "succeeded"
    email = OutboxEmail.unscoped.get()
    assert stored.result == {"status": "accepted", "outbox_id": email.pk, "to": EMAIL["to"]}
    assert json.loads(stored.result_preview) == stored.result
    assert stored.pending_arguments == ""
    assert stored.queued_at <= stored.started_at <= stored.finished_at
    assert stored.queue_ms is not None
    assert stored.duration_ms is not None
    assert (email.body, email.tool_call_id, email.tenant_id) == (
        "the secret body",
        stored.pk,
        alice_agent.tenant_id,
    )
    assert tool_call_response(record=stored) == stored.result


def test_tool_call_execute_a_redelivery_runs_nothing_and_wakes_the_session_again(
    alice_agent, alice_session, synced_tools
):
    allow(alice_agent, "send_email")
    queued = admit_call(alice_session, "send_email", EMAIL).record
    woken = []
    first = execute(queued, notify=woken.append)
    again = execute(queued, notify=woken.append)  # the same task, delivered twice
    assert again.finished_at == first.finished_at == fresh(queued).finished_at
    assert OutboxEmail.unscoped.count() == 1
    assert ToolCallRecord.unscoped.count() == 1
    # The waiting session may have missed the first wake-up: a redelivery sends it again.
    assert [(r.pk, r.status) for r in woken] == [(queued.pk, "succeeded")] * 2


def orphan(record, seconds_ago: float) -> None:
    """The call as a worker left it when it died mid-call: claimed, never finished."""
    started = timezone.now() - timedelta(seconds=seconds_ago)
    ToolCallRecord.unscoped.filter(pk=record.pk).update(status="running", started_at=started)


def test_tool_call_execute_a_redelivery_of_an_orphaned_call_finishes_it_without_running(
    alice_agent, alice_session, synced_tools
):
    allow(alice_agent, "send_email")
    queued = admit_call(alice_session, "send_email", EMAIL).record
    orphan(queued, seconds_ago=queued.timeout_seconds + execution.ORPHAN_GRACE_SECONDS + 1)
    woken = []
    done = execute(queued, notify=woken.append)  # redelivered: its first worker died
    stored = fresh(queued)
    assert (stored.status, stored.error) == ("timeout", execution.ORPHAN_ERROR)
    assert done.status == "timeout"
    assert OutboxEmail.unscoped.count() == 0  # it may have had its effect: never run again
    assert [(r.pk, r.status) for r in woken] == [(queued.pk, "timeout")]


def test_tool_call_execute_a_redelivery_waits_for_an_orphan_to_pass_its_timeout(
    alice_agent, alice_session, synced_tools, monkeypatch
):
    allow(alice_agent, "send_email", timeout_seconds=0.5)
    monkeypatch.setattr(execution, "ORPHAN_GRACE_SECONDS", 0.3)
    queued = admit_call(alice_session, "send_email", EMAIL).record
    orphan(queued, seconds_ago=0)
    started = time.monotonic()
    execute(queued, notify=lambda record: None)
    assert time.monotonic() - started >= 0.7  # its runner had until its timeout and a grace
    assert fresh(queued).status == "timeout"


def test_tool_call_execute_of_a_refused_call_runs_nothing(alice_session, synced_tools):
    refused = admit_call(alice_session, "send_email", EMAIL).record
    assert execute(refused).status == "rejected"
    assert fresh(refused).started_at is None
    assert not OutboxEmail.unscoped.exists()


def test_tool_call_execute_lookup_record_is_tenant_isolated(
    alice, charlie, alice_agent, alice_session, synced_tools
):
    LookupRecord.unscoped.create(tenant=charlie.tenant, key="vip", value="charlie data")
    LookupRecord.unscoped.create(tenant=alice.tenant, key="mine", value="alice data")
    allow(alice_agent, "lookup_record")
    theirs = admit_call(alice_session, "lookup_record", {"key": "vip"}).record
    mine = admit_call(alice_session, "lookup_record", {"key": "mine"}, call_id="c2").record
    execute(theirs)
    execute(mine)
    assert fresh(theirs).result == {"found": False, "key": "vip"}
    assert fresh(mine).result == {"found": True, "key": "mine", "value": "alice data"}


def test_tool_call_execute_tool_exception_becomes_failed_record(
    alice_agent, alice_session, scratch_tools
):
    allow(alice_agent, "t_boom")
    allow(alice_agent, "t_not_a_dict")
    boom = fresh(execute(admit_call(alice_session, "t_boom", {}).record))
    assert boom.status == "failed"
    assert boom.error == "RuntimeError: disk on fire"
    assert tool_call_response(record=boom) == {"error": "RuntimeError: disk on fire"}
    assert (boom.result, boom.pending_arguments) == (None, "")
    listy = fresh(execute(admit_call(alice_session, "t_not_a_dict", {}, call_id="c2").record))
    assert listy.status == "failed"
    assert listy.error == "TypeError: tool returned list, not an object"


def test_tool_call_execute_sample_tool_failure_is_recorded(
    alice_agent, alice_session, synced_tools
):
    allow(alice_agent, "broken_tool")
    broken = fresh(execute(admit_call(alice_session, "broken_tool", {}).record))
    assert (broken.status, broken.error) == ("failed", "RuntimeError: kaput")


def test_tool_call_execute_timeout_discards_late_side_effects(
    alice_agent, alice_session, scratch_tools, tool_threads
):
    allow(alice_agent, "t_slow_mail")
    queued = admit_call(alice_session, "t_slow_mail", {"seconds": 1.2}).record
    started = time.monotonic()
    done = execute(queued)
    assert time.monotonic() - started < 1.2  # returned at the timeout, not when the tool did
    assert done.status == "timeout"
    assert tool_call_response(record=done) == {"error": "tool timed out after 0.3s"}
    assert scratch_tools.finished.wait(5)  # the tool did finish, late ...
    tool_threads.join()
    assert not OutboxEmail.unscoped.exists()  # ... and its write was rolled back
    stored = fresh(queued)
    assert stored.status == "timeout"
    assert stored.error == "tool timed out after 0.3s"
    assert stored.result is None


def execute_in_thread(record, into: list) -> None:
    """``execute`` from a thread of the test's own, which must hand its connection back (a
    connection left open keeps the test database from being flushed)."""
    try:
        into.append(execute(record))
    finally:
        connections.close_all()


def test_tool_call_cancel_while_running_rolls_back_and_keeps_cancelled(
    alice_agent, alice_session, scratch_tools, tool_threads
):
    allow(alice_agent, "t_gated_mail")
    queued = admit_call(alice_session, "t_gated_mail", {}).record
    returned: list[ToolCallRecord] = []
    runner = threading.Thread(target=execute_in_thread, args=(queued, returned))
    runner.start()
    assert scratch_tools.started.wait(5)
    assert fresh(queued).status == "running"
    with tenant_scope(alice_agent.tenant_id):
        assert tool_call_finish_early(record=queued, status="cancelled")
    scratch_tools.release.set()  # the tool finishes and writes, after the cancel
    runner.join(10)
    tool_threads.join()
    final = fresh(queued)
    assert final.status == "cancelled"
    assert [r.status for r in returned] == ["cancelled"]
    assert tool_call_response(record=final) == {"error": "cancelled"}
    assert final.result is None
    assert not OutboxEmail.unscoped.exists()


def test_tool_call_execute_waiting_for_a_busy_pool_past_its_timeout_never_runs(
    alice_agent, alice_session, scratch_tools, tool_threads, settings
):
    settings.TOOL_THREADS = 1  # the pool is built at the first call, with one thread
    allow(alice_agent, "t_slow_mail")
    allow(alice_agent, "t_note")
    overrunning = admit_call(alice_session, "t_slow_mail", {"seconds": 1.5}).record
    waiting = admit_call(alice_session, "t_note", {"label": "waiting"}, call_id="c2").record
    assert execute(overrunning).status == "timeout"  # after 0.3 s; its thread runs on
    started = time.monotonic()
    assert execute(waiting).status == "timeout"  # no free thread within its 0.3 s
    assert time.monotonic() - started < 1.0
    tool_threads.join()  # the overrunning tool ends; the waiting call's turn comes
    stored = fresh(waiting)
    assert stored.status == "timeout"
    assert stored.started_at is None  # never claimed ...
    assert scratch_tools.runs == ["t_slow_mail"]  # ... so its tool never ran
    assert not OutboxEmail.unscoped.exists()


def test_tool_call_execute_pool_runs_calls_side_by_side(
    alice_agent, alice_session, scratch_tools, tool_threads, settings
):
    settings.TOOL_THREADS = 2
    allow(alice_agent, "t_slow_mail")
    allow(alice_agent, "t_note", timeout_seconds=5)
    overrunning = admit_call(alice_session, "t_slow_mail", {"seconds": 1.0}).record
    second = admit_call(alice_session, "t_note", {"label": "second"}, call_id="c2").record
    assert execute(overrunning).status == "timeout"
    assert execute(second).status == "succeeded"  # a second thread was free
    tool_threads.join()
    assert sorted(scratch_tools.runs) == ["second", "t_slow_mail"]


def test_tool_call_execute_refuses_an_entry_disabled_behind_the_signals_back(
    alice_agent, alice_session, synced_tools
):
    allow(alice_agent, "send_email", policy={"allowed_domains": ["example.com"]})
    with tenant_scope(alice_agent.tenant_id):
        allowlist = tool_allowlist_for_agent(agent=alice_agent)
    AgentTool.unscoped.filter(agent=alice_agent).update(enabled=False)  # no version bump
    admission = admit_call(alice_session, "send_email", EMAIL, allowlist=allowlist)
    assert admission.record.status == "queued"  # the stale copy admits it ...
    execute(admission.record)
    stored = fresh(admission.record)
    assert stored.status == "failed"  # ... but it never runs
    assert stored.error == (
        "LookupError: tool 'send_email' is no longer allowlisted for this agent"
    )
    assert stored.started_at is not None
    assert not OutboxEmail.unscoped.exists()


def test_tool_call_execute_enforces_a_policy_tightened_behind_the_signals_back(
    alice_agent, alice_session, synced_tools
):
    allow(alice_agent, "send_email", policy={"allowed_domains": ["example.com"]})
    with tenant_scope(alice_agent.tenant_id):
        allowlist = tool_allowlist_for_agent(agent=alice_agent)
    AgentTool.unscoped.filter(agent=alice_agent).update(policy={"allowed_domains": ["x.org"]})
    admission = admit_call(alice_session, "send_email", EMAIL, allowlist=allowlist)
    assert admission.record.status == "queued"
    execute(admission.record)
    stored = fresh(admission.record)
    assert stored.status == "failed"
    assert "recipient bob@example.com is not allowed by policy" in stored.error
    assert not OutboxEmail.unscoped.exists()


def test_tool_call_execute_fails_a_call_whose_entry_was_deleted_in_one_record(
    alice_agent, alice_session, synced_tools
):
    entry = allow(alice_agent, "send_email")
    queued = admit_call(alice_session, "send_email", EMAIL).record
    with tenant_scope(alice_agent.tenant_id):
        agent_tool_delete(agent_tool=entry)
    execute(queued)
    (stored,) = ToolCallRecord.unscoped.all()
    assert stored.status == "failed"
    assert "no longer allowlisted" in stored.error
    assert stored.agent_tool_id is None  # as SET_NULL does
    assert stored.agent_id == alice_agent.pk
    assert not OutboxEmail.unscoped.exists()


def test_tool_call_execute_of_another_tenants_call_is_not_found(
    alice_agent, alice_session, charlie, synced_tools
):
    from tools.execution import tool_call_execute

    allow(alice_agent, "send_email")
    queued = admit_call(alice_session, "send_email", EMAIL).record
    with tenant_scope(charlie.tenant.pk), pytest.raises(ToolCallRecord.DoesNotExist):
        tool_call_execute(record_id=queued.pk)
    assert fresh(queued).status == "queued"
    assert not OutboxEmail.unscoped.exists()


def test_tool_call_run_inprocess_runs_in_a_thread_and_hands_over_the_outcome(
    alice_agent, alice_session, synced_tools
):
    allow(alice_agent, "get_current_time")
    queued = admit_call(alice_session, "get_current_time", UTC).record
    finished, done = [], threading.Event()
    tool_call_run_inprocess(record=queued, notify=finished.append, done=done.set)
    assert done.wait(10)
    stored = fresh(queued)
    assert stored.status == "succeeded"
    assert [(r.pk, r.status, r.result) for r in finished] == [
        (stored.pk, "succeeded", stored.result)
    ]


def test_tool_call_execute_notifies_the_sessions_results_group(
    alice_agent, alice_session, synced_tools, settings
):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    allow(alice_agent, "get_current_time")
    queued = admit_call(alice_session, "get_current_time", UTC).record
    other_session = make_session(alice_agent, end_user_id="someone-else")
    layer = get_channel_layer()

    async def listen() -> tuple[dict, dict | None]:
        ours, theirs = await layer.new_channel(), await layer.new_channel()
        await layer.group_add(tool_results_group(alice_session.pk), ours)
        await layer.group_add(tool_results_group(other_session.pk), theirs)
        await sync_to_async(execute)(queued)
        message = await layer.receive(ours)
        try:
            async with asyncio.timeout(0.3):
                stray = await layer.receive(theirs)
        except TimeoutError:
            stray = None
        return message, stray

    message, stray = async_to_sync(listen)()
    stored = fresh(queued)
    # A copy of what was committed, so the waiting call need not read the row back.
    assert message == tool_call_outcome(record=stored)
    assert message["key"] == stored.idempotency_key
    assert (message["call_id"], message["status"]) == ("c1", "succeeded")
    assert message["response"]["timezone"] == "UTC"
    assert stray is None  # another session's group hears nothing


def hold_a_thread(record, scratch_tools, into: list) -> threading.Thread:
    """Run ``record`` (a ``t_gated_mail`` call) in the pool until the test releases it."""
    runner = threading.Thread(target=execute_in_thread, args=(record, into))
    runner.start()
    assert scratch_tools.started.wait(5)
    return runner


def test_tool_call_execute_a_tenant_at_its_share_does_not_stop_another_tenant(
    alice, alice_agent, alice_session, charlie_agent, scratch_tools, tool_threads, settings
):
    settings.TOOL_THREADS, settings.TOOL_THREADS_PER_TENANT = 2, 1
    allow(alice_agent, "t_gated_mail")
    allow(charlie_agent, "t_note", timeout_seconds=3)
    holding = admit_call(alice_session, "t_gated_mail", {}).record
    beyond = admit_call(alice_session, "t_gated_mail", {}, occurrence=1, call_id="c2").record
    charlies = admit_call(make_session(charlie_agent), "t_note", {"label": "charlie"}).record
    returned: list[ToolCallRecord] = []
    runners = [hold_a_thread(holding, scratch_tools, returned)]
    # Alice's second call, while her first holds her whole share: refused at once, and the
    # model is told so (before: it took the pool's last thread and Charlie's call timed out).
    runners.append(threading.Thread(target=execute_in_thread, args=(beyond, returned)))
    runners[-1].start()
    runners[-1].join(5)
    refused = fresh(beyond)
    assert refused.status == "failed"
    assert refused.error.startswith("busy: 1 tool calls of this organisation")
    assert tool_call_response(record=refused) == {"error": refused.error}
    assert refused.started_at is None  # never claimed, never ran
    assert execute(charlies).status == "succeeded"  # Charlie's call still gets a thread
    scratch_tools.release.set()
    for runner in runners:
        runner.join(10)
    tool_threads.join()
    assert fresh(holding).status == "succeeded"
    assert OutboxEmail.unscoped.count() == 1  # only the call that ran wrote
    assert execution.tool_pool().in_pool(alice.tenant.pk) == 0  # every slot handed back


def test_tool_call_run_inprocess_a_call_beyond_the_tenants_share_is_finished_busy(
    alice_agent, alice_session, scratch_tools, tool_threads, settings
):
    settings.TOOL_THREADS, settings.TOOL_THREADS_PER_TENANT = 2, 1
    allow(alice_agent, "t_gated_mail")
    holding = admit_call(alice_session, "t_gated_mail", {}).record
    beyond = admit_call(alice_session, "t_gated_mail", {}, occurrence=1, call_id="c2").record
    finished: list[ToolCallRecord] = []
    tool_call_run_inprocess(record=holding, notify=finished.append)
    assert scratch_tools.started.wait(5)
    done = threading.Event()
    tool_call_run_inprocess(record=beyond, notify=finished.append, done=done.set)
    # Answered at once, with a final state the waiting session hands to the model.
    assert done.wait(5)
    assert [(r.pk, r.status) for r in finished] == [(beyond.pk, "failed")]
    assert finished[0].error.startswith("busy:")
    assert fresh(beyond).started_at is None
    scratch_tools.release.set()
    tool_threads.join()
    assert [(r.pk, r.status) for r in finished][1:] == [(holding.pk, "succeeded")]
    assert OutboxEmail.unscoped.count() == 1
