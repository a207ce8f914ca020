"""Stranded calls: a process that dies between a call's commit and its dispatch, or while
running it in-process, leaves it unfinished; the sweep finishes it once it is past its
timeout and a grace, and a runner that comes late runs nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from sessions import reaper
from tests.tools.conftest import admit_call, allow, execute, make_session, start_call
from tools.execution import ORPHAN_ERROR
from tools.models import OutboxEmail, ToolCallRecord
from tools.notify import tool_results_group
from tools.outcome import tool_call_outcome
from tools.stranded import (
    FIRST_SWEEP_LOOKBACK,
    NEVER_STARTED_ERROR,
    STRANDED_GRACE,
    SWEEP_LOOKBACK,
    tool_calls_finish_stranded,
)

EMAIL = {"to": "bob@example.com", "subject": "Hi", "body": "the body"}

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("tool_threads")]


def fresh(record) -> ToolCallRecord:
    return ToolCallRecord.unscoped.get(pk=record.pk)


def age(record, seconds: float) -> None:
    """Move the call's clock back, as if it had been admitted (and claimed) that long ago."""
    then = timezone.now() - timedelta(seconds=seconds)
    fields = {"created_at": then, "queued_at": then}
    if record.started_at is not None:
        fields["started_at"] = then
    ToolCallRecord.unscoped.filter(pk=record.pk).update(**fields)


def past_due(record) -> float:
    return record.timeout_seconds + STRANDED_GRACE.total_seconds() + 1


def stranded_queued(session, call_id: str = "c1") -> ToolCallRecord:
    """Admitted and committed, never dispatched: its process died before on_commit ran."""
    # A request of its own (the same arguments again would be a re-ask of the same call).
    args = {**EMAIL, "subject": call_id}
    record = admit_call(session, "send_email", args, call_id=call_id).record
    assert (record.status, record.call_id) == ("queued", call_id)
    return record


def test_a_call_never_dispatched_is_finished_failed_and_its_session_is_woken(
    alice_agent, alice_session, synced_tools, settings
):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    allow(alice_agent, "send_email")
    record = stranded_queued(alice_session)
    age(record, past_due(record))
    layer = get_channel_layer()

    async def sweep_and_listen() -> tuple[int, dict]:
        channel = await layer.new_channel()
        await layer.group_add(tool_results_group(alice_session.pk), channel)
        swept = await sync_to_async(tool_calls_finish_stranded)()
        async with asyncio.timeout(5):
            return swept, await layer.receive(channel)

    swept, message = async_to_sync(sweep_and_listen)()
    stored = fresh(record)
    assert swept == 1
    assert (stored.status, stored.error) == ("failed", NEVER_STARTED_ERROR)
    assert stored.finished_at is not None
    assert stored.pending_arguments == ""
    # A session resumed in another process hears the outcome like any other.
    assert message == tool_call_outcome(record=stored)
    assert message["response"] == {"error": NEVER_STARTED_ERROR}


def test_a_swept_call_delivered_late_to_a_runner_runs_nothing(
    alice_agent, alice_session, synced_tools
):
    allow(alice_agent, "send_email")
    record = stranded_queued(alice_session)
    age(record, past_due(record))
    assert tool_calls_finish_stranded() == 1
    late = execute(record)  # a worker that got the message after all (e.g. a slow broker)
    assert late.status == "failed"
    assert fresh(record).started_at is None
    assert not OutboxEmail.unscoped.exists()


def test_a_call_whose_runner_died_mid_call_is_finished_timeout(
    alice_agent, alice_session, synced_tools
):
    allow(alice_agent, "send_email")
    running = start_call(alice_session, alice_agent, "c1", "send_email", EMAIL)
    age(running, past_due(running))
    assert tool_calls_finish_stranded() == 1
    stored = fresh(running)
    # It may have had its effect: timeout, not failed, and never run again.
    assert (stored.status, stored.error) == ("timeout", ORPHAN_ERROR)
    assert execute(running).status == "timeout"
    assert not OutboxEmail.unscoped.exists()


def test_calls_not_yet_due_and_finished_calls_are_left_alone(
    alice_agent, alice_session, synced_tools
):
    allow(alice_agent, "send_email", timeout_seconds=60)
    young = stranded_queued(alice_session, call_id="young")
    # Older than the grace but within its own timeout: its runner may still finish it.
    age(young, 60 + STRANDED_GRACE.total_seconds() - 5)
    running = start_call(alice_session, alice_agent, "running", "send_email", EMAIL)
    age(running, 40)
    done = stranded_queued(alice_session, call_id="done")
    age(done, 3600)  # finished rows are append-only: aged before it runs
    execute(done)
    assert fresh(done).status == "succeeded"

    assert tool_calls_finish_stranded() == 0
    assert [fresh(r).status for r in (young, running, done)] == ["queued", "running", "succeeded"]

    # The same calls once due (a call's clock starts when it was claimed, if it was).
    age(young, past_due(young))
    assert tool_calls_finish_stranded() == 1
    assert fresh(young).status == "failed"


def test_the_routine_sweep_looks_back_ten_minutes_a_first_one_a_day(
    alice_agent, alice_session, synced_tools
):
    allow(alice_agent, "send_email")
    old = stranded_queued(alice_session)  # stranded while no server ran for an hour
    age(old, 3600)
    assert SWEEP_LOOKBACK < timedelta(hours=1) < FIRST_SWEEP_LOOKBACK
    assert tool_calls_finish_stranded() == 0
    assert tool_calls_finish_stranded(lookback=FIRST_SWEEP_LOOKBACK) == 1
    assert fresh(old).status == "failed"


def test_every_tenants_calls_are_swept(alice_agent, alice_session, charlie_agent, synced_tools):
    allow(alice_agent, "send_email")
    allow(charlie_agent, "send_email")
    calls = [stranded_queued(alice_session), stranded_queued(make_session(charlie_agent))]
    for record in calls:
        age(record, past_due(record))
    assert tool_calls_finish_stranded() == 2
    assert {(fresh(r).tenant_id, fresh(r).status) for r in calls} == {
        (alice_agent.tenant_id, "failed"), (charlie_agent.tenant_id, "failed"),
    }  # fmt: skip


def test_the_session_reaper_sweeps_stranded_calls_first_a_day_back_then_ten_minutes(
    alice_agent, alice_session, synced_tools, monkeypatch
):
    allow(alice_agent, "send_email")
    monkeypatch.setitem(reaper._tools_swept, "once", False)  # a process that never swept
    old = stranded_queued(alice_session, call_id="old")
    age(old, 3600)
    reaper.maintain_once()
    assert fresh(old).status == "failed"

    older = stranded_queued(alice_session, call_id="older")
    age(older, 3600)
    recent = stranded_queued(alice_session, call_id="recent")
    age(recent, past_due(recent))
    reaper.maintain_once()
    assert (fresh(older).status, fresh(recent).status) == ("queued", "failed")
