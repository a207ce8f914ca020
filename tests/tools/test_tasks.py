"""The Celery task: it opens its own scope (``.apply()`` outside any scope), and a real
worker runs an enqueued call to completion."""

from __future__ import annotations

import pytest

from tests.tools.conftest import allow, wait_for
from tools.models import OutboxEmail, ToolCallRecord
from tools.services import tool_call_admit
from tools.tasks import tool_call_execute_task
from voice_platform.tenancy.scope import current_tenant_id, tenant_scope

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = {"to": "bob@example.com", "subject": "Hi", "body": "Hello"}


def admitted(session, agent, name="send_email", args=None, call_id="c1", enqueue=False):
    with tenant_scope(agent.tenant_id):
        return tool_call_admit(
            session=session, agent=agent, call_id=call_id, name=name, args=args or EMAIL,
            enqueue=enqueue,
        ).pending  # fmt: skip


def test_task_opens_its_own_scope(alice_agent, alice_session, synced_tools):
    allow(alice_agent, "send_email")
    pending = admitted(alice_session, alice_agent)
    assert current_tenant_id() is None  # outside any scope on purpose
    kwargs = {"tenant_id": pending.tenant_id, "call": pending.as_message()}
    tool_call_execute_task.apply(kwargs=kwargs).get()
    assert ToolCallRecord.unscoped.get(call_id="c1").status == "succeeded"
    tool_call_execute_task.apply(kwargs=kwargs).get()  # redelivered: no second email
    assert OutboxEmail.unscoped.count() == 1


def test_task_for_wrong_tenant_writes_and_runs_nothing(
    alice_agent, alice_session, charlie, synced_tools
):
    allow(alice_agent, "send_email")
    pending = admitted(alice_session, alice_agent)
    result = tool_call_execute_task.apply(
        kwargs={"tenant_id": charlie.tenant.pk, "call": pending.as_message()}
    )
    assert result.failed()
    assert isinstance(result.result, PermissionError)
    assert not ToolCallRecord.unscoped.exists()
    assert not OutboxEmail.unscoped.exists()


def test_task_is_configured_for_late_acks_and_routed_to_tool_queue(settings):
    assert tool_call_execute_task.acks_late is True
    assert tool_call_execute_task.reject_on_worker_lost is True
    assert tool_call_execute_task.time_limit > settings.TOOL_TIMEOUT_MAX
    from voice_platform.celery import app

    route = app.amqp.router.route({}, tool_call_execute_task.name)
    assert route["queue"].name == settings.TOOL_CELERY_QUEUE
    assert app.conf.worker_prefetch_multiplier == 1


def test_worker_runs_enqueued_call(alice_agent, alice_session, synced_tools, celery_worker_process):
    allow(alice_agent, "send_email", policy={"allowed_domains": ["example.com"]})
    pending = admitted(alice_session, alice_agent, enqueue=True)  # sent to the worker
    done = wait_for(
        lambda: ToolCallRecord.unscoped.filter(call_id="c1", status="succeeded").first(),
        timeout=20,
    )
    assert done.celery_task_id == pending.task_id
    assert done.result["outbox_id"] == OutboxEmail.unscoped.get(tool_call=done).pk
    assert pending.task_id in celery_worker_process.log()
