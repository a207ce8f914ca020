"""The Celery task: it opens its own scope (``.apply()`` outside any scope), and a real
worker runs a dispatched call to completion."""

from __future__ import annotations

import asyncio
import signal

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from tests.tools.conftest import admit_call, allow, start_celery_worker, wait_for
from tools.execution import ORPHAN_ERROR
from tools.models import OutboxEmail, ToolCallRecord
from tools.notify import tool_results_group
from tools.outcome import tool_call_response
from tools.tasks import tool_call_execute_task
from voice_platform.tenancy.scope import current_tenant_id

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = {"to": "bob@example.com", "subject": "Hi", "body": "Hello"}


def test_task_opens_its_own_scope(alice_agent, alice_session, synced_tools, tool_threads):
    allow(alice_agent, "send_email")
    record = admit_call(alice_session, "send_email", EMAIL).record
    assert current_tenant_id() is None  # outside any scope on purpose
    kwargs = {"tenant_id": record.tenant_id, "record_id": record.pk}
    tool_call_execute_task.apply(kwargs=kwargs).get()
    assert ToolCallRecord.unscoped.get(pk=record.pk).status == "succeeded"
    tool_call_execute_task.apply(kwargs=kwargs).get()  # redelivered: no second email
    assert OutboxEmail.unscoped.count() == 1


def test_task_for_wrong_tenant_runs_nothing(
    alice_agent, alice_session, charlie, synced_tools, tool_threads
):
    allow(alice_agent, "send_email")
    record = admit_call(alice_session, "send_email", EMAIL).record
    result = tool_call_execute_task.apply(
        kwargs={"tenant_id": charlie.tenant.pk, "record_id": record.pk}
    )
    assert result.failed()
    assert isinstance(result.result, ToolCallRecord.DoesNotExist)  # as if it did not exist
    assert ToolCallRecord.unscoped.get(pk=record.pk).status == "queued"
    assert not OutboxEmail.unscoped.exists()


def test_task_is_configured_for_late_acks_and_routed_to_tool_queue(settings):
    assert tool_call_execute_task.acks_late is True
    assert tool_call_execute_task.reject_on_worker_lost is True
    assert tool_call_execute_task.time_limit > settings.TOOL_TIMEOUT_MAX
    assert tool_call_execute_task.soft_time_limit > settings.TOOL_TIMEOUT_MAX
    from voice_platform.celery import app

    route = app.amqp.router.route({}, tool_call_execute_task.name)
    assert route["queue"].name == settings.TOOL_CELERY_QUEUE
    assert app.conf.worker_prefetch_multiplier == 1


def test_worker_runs_dispatched_call(
    alice_agent, alice_session, synced_tools, celery_worker_process
):
    allow(alice_agent, "send_email", policy={"allowed_domains": ["example.com"]})
    queued = admit_call(alice_session, "send_email", EMAIL, dispatch=True).record  # to the worker
    done = wait_for(
        lambda: ToolCallRecord.unscoped.filter(pk=queued.pk, status="succeeded").first(),
        timeout=20,
    )
    assert done.celery_task_id == queued.celery_task_id
    assert done.result["outbox_id"] == OutboxEmail.unscoped.get(tool_call=done).pk
    assert queued.celery_task_id in celery_worker_process.log()


def test_worker_killed_mid_tool_the_redelivery_finishes_the_call_once(
    alice_agent, alice_session, synced_tools, celery_worker_process, tmp_path, settings
):
    """SIGKILL a worker while its tool runs: Redis redelivers the unacknowledged task (late
    acks, ``visibility_timeout``) to a new worker, which never runs the call again (it may
    have had its effect) and finishes it as ``timeout``, waking the session: one final state,
    the side effect at most once, the model told."""
    allow(alice_agent, "slow_email", timeout_seconds=2)
    layer = get_channel_layer()
    listener = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(tool_results_group(alice_session.pk), listener)
    queued = admit_call(
        alice_session, "slow_email", {"to": "x@example.com", "seconds": 1.5}, dispatch=True
    ).record
    running = wait_for(
        lambda: ToolCallRecord.unscoped.filter(pk=queued.pk, status="running").first(),
        timeout=20,
        interval=0.01,
    )
    celery_worker_process.process.send_signal(signal.SIGKILL)  # mid-tool: no ack, no cleanup
    celery_worker_process.process.wait(10)
    assert ToolCallRecord.unscoped.get(pk=queued.pk).status == "running"  # left behind
    # A visibility timeout above the orphan's due time (timeout 2 s + grace 5 s), so the
    # redelivered task does not outlive it; the production default is above every tool's.
    successor = start_celery_worker(
        queue=celery_worker_process.queue,
        redis_url=settings.REDIS_URL,
        log_path=tmp_path / "successor.log",
        env={"CELERY_VISIBILITY_TIMEOUT": "8", "CELERY_RESTORE_INTERVAL": "1"},
    )
    try:
        final = wait_for(
            lambda: ToolCallRecord.unscoped.filter(pk=queued.pk, status="timeout").first(),
            timeout=30,
        )
        assert queued.celery_task_id in successor.log()  # redelivered there
    finally:
        successor.stop()
    assert final.error == ORPHAN_ERROR
    assert final.started_at == running.started_at  # claimed once, never run again
    assert final.finished_at is not None
    assert final.pending_arguments == ""
    assert tool_call_response(record=final) == {"error": "tool timed out after 2s"}
    assert ToolCallRecord.unscoped.count() == 1
    assert not OutboxEmail.unscoped.exists()  # killed before its write: at most once (zero)
    # The waiting session is woken with the final outcome (not silently lost).
    woken = async_to_sync(asyncio.wait_for)(layer.receive(listener), 10)
    assert (woken["record_id"], woken["status"]) == (queued.pk, "timeout")
