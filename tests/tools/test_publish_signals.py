"""Tool tasks are published by Celery's own ``apply_async``: its publish signals fire, so
tracing and monitoring see every tool task (the hand-built message they used to miss)."""

from __future__ import annotations

import uuid

import pytest
from celery.signals import after_task_publish, before_task_publish

from tests.tools.conftest import allow, make_session
from tools.admission import ToolCallRequest, tool_call_admit, tool_call_enqueue
from tools.allowlist import tool_allowlist_for_agent
from tools.models import ToolCallRecord
from voice_platform.tenancy.scope import tenant_scope


@pytest.fixture
def published():
    seen: list[tuple[str, str, dict]] = []

    def before(sender=None, headers=None, body=None, routing_key=None, **_):
        seen.append(("before", sender, {"id": headers["id"], "routing_key": routing_key,
                                        "kwargs": body[1]}))  # fmt: skip

    def after(sender=None, headers=None, routing_key=None, **_):
        seen.append(("after", sender, {"id": headers["id"], "routing_key": routing_key}))

    before_task_publish.connect(before, weak=False)
    after_task_publish.connect(after, weak=False)
    try:
        yield seen
    finally:
        before_task_publish.disconnect(before)
        after_task_publish.disconnect(after)


def test_tool_task_publish_fires_celerys_publish_signals(
    alice_agent, synced_tools, settings, published, django_capture_on_commit_callbacks
):
    settings.TOOL_CELERY_QUEUE = f"signals_test_{uuid.uuid4().hex[:8]}"  # no worker takes it
    session = make_session(alice_agent)
    with tenant_scope(alice_agent.tenant_id):
        allow(alice_agent, "get_current_time")
        request = ToolCallRequest(
            tenant_id=alice_agent.tenant_id, session_id=session.pk, end_user_id="u1",
            call_id="fc-1", name="get_current_time", args={"timezone": "UTC"}, turn=0,
        )  # fmt: skip
        with django_capture_on_commit_callbacks(execute=True):
            admission = tool_call_admit(
                request=request, allowlist=tool_allowlist_for_agent(agent=alice_agent),
                dispatch=tool_call_enqueue,
            )  # fmt: skip
        record = ToolCallRecord.objects.get(pk=admission.record.pk)
    assert record.status == "queued"  # published, not failed
    name = "tools.tasks.tool_call_execute_task"
    assert [(when, sender) for when, sender, _ in published] == [("before", name), ("after", name)]
    before, after = published[0][2], published[1][2]
    assert before["id"] == after["id"] == record.celery_task_id
    assert before["routing_key"] == after["routing_key"] == settings.TOOL_CELERY_QUEUE
    # The message carries ids only: the arguments stay in the row, encrypted.
    assert before["kwargs"] == {"tenant_id": record.tenant_id, "record_id": record.pk}
