"""The Celery task: it opens its own scope (``.apply()`` outside any scope), and a real
worker runs a dispatched call to completion."""

from __future__ import annotations

import pytest

from tests.tools.conftest import admit_call, allow, wait_for
from tools.models import OutboxEmail, ToolCallRecord
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
