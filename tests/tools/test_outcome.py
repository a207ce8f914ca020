"""Outcomes: what the model receives, finding a call by its key, and finishing a call from
outside its run (timeout, cancel, a refused broker)."""

from __future__ import annotations

from unittest import mock

import pytest

from tests.tools.conftest import admit_call, allow, execute, start_call
from tools.models import OutboxEmail, ToolCallRecord
from tools.outcome import (
    tool_call_by_key,
    tool_call_cancel_by_key,
    tool_call_finish_early,
    tool_call_outcome,
    tool_call_outcome_by_key,
    tool_call_response,
)
from voice_platform.celery import app as celery_app
from voice_platform.tenancy.scope import tenant_scope

EMAIL = {"to": "bob@example.com", "subject": "Hi", "body": "the secret body"}
UTC = {"timezone": "UTC"}

pytestmark = pytest.mark.django_db


def fresh(record) -> ToolCallRecord:
    return ToolCallRecord.unscoped.get(pk=record.pk)


def finish_early(record, status, **kwargs) -> bool:
    with tenant_scope(record.tenant_id):
        return tool_call_finish_early(record=record, status=status, **kwargs)


def test_tool_call_response_for_each_status():
    record = ToolCallRecord(timeout_seconds=2.5, rejection_reason="no", error="ValueError: x")
    expected = {
        "rejected": {"error": "no"},
        "failed": {"error": "ValueError: x"},
        "timeout": {"error": "tool timed out after 2.5s"},
        "cancelled": {"error": "cancelled"},
        "queued": {"error": "tool call is still queued"},
        "running": {"error": "tool call is still running"},
    }
    for status, response in expected.items():
        record.status = status
        assert tool_call_response(record=record) == response
    record.status, record.result = "succeeded", {"a": 1}
    assert tool_call_response(record=record) == {"a": 1}
    record.error = ""
    record.status = "failed"
    assert tool_call_response(record=record) == {"error": "tool failed"}


def test_tool_call_outcome_is_the_rows_key_status_and_response(alice_session):
    record = fresh(admit_call(alice_session, "nope", {}, call_id="c7").record)
    assert tool_call_outcome(record=record) == {
        "type": "tool.result",
        "key": record.idempotency_key,
        "record_id": record.pk,
        "call_id": "c7",
        "status": "rejected",
        "response": {"error": record.rejection_reason},
    }
    assert len(record.idempotency_key) == 64


def test_tool_call_by_key_finds_only_the_own_tenants_call(alice_session, charlie_agent):
    record = admit_call(alice_session, "nope", {}).record
    key = fresh(record).idempotency_key
    with tenant_scope(alice_session.tenant_id):
        assert tool_call_by_key(key).pk == record.pk
        assert tool_call_outcome_by_key(key)["record_id"] == record.pk
        assert tool_call_by_key("0" * 64) is None
        assert tool_call_outcome_by_key("0" * 64) is None
    with tenant_scope(charlie_agent.tenant_id):  # Charlie's session cannot see it
        assert tool_call_by_key(key) is None
        assert not tool_call_cancel_by_key(key)
    assert fresh(record).status == "rejected"


def test_tool_call_finish_early_before_start_means_never_run(alice_agent, alice_session):
    allow(alice_agent, "send_email")
    record = admit_call(alice_session, "send_email", EMAIL).record
    assert finish_early(record, "timeout")
    assert not finish_early(record, "cancelled")  # finished already: the first one wins
    assert execute(record).status == "timeout"  # its worker, late: runs nothing
    assert not OutboxEmail.unscoped.exists()
    final = fresh(record)
    assert final.status == "timeout"
    assert final.error == "tool timed out after 5s"
    assert (final.started_at, final.duration_ms) == (None, None)
    assert final.finished_at is not None
    assert final.pending_arguments == ""
    assert final.arguments == {**EMAIL, "body": "[redacted]"}


def test_tool_call_finish_early_does_not_touch_finished_records(alice_agent, alice_session):
    rejected = admit_call(alice_session, "nope", {}).record
    assert not finish_early(rejected, "cancelled")
    assert not finish_early(rejected, "timeout")
    stored = fresh(rejected)
    assert (stored.status, stored.error) == ("rejected", "")
    allow(alice_agent, "get_current_time")
    running = start_call(alice_session, alice_agent, "c2", "get_current_time", UTC)
    ToolCallRecord.unscoped.filter(pk=running.pk).update(status="succeeded", result={"a": 1})
    assert not finish_early(running, "timeout")
    assert (fresh(running).status, fresh(running).result) == ("succeeded", {"a": 1})


def test_tool_call_finish_early_failed_never_fails_a_started_call(alice_agent, alice_session):
    allow(alice_agent, "get_current_time")
    running = start_call(alice_session, alice_agent, "c1", "get_current_time", UTC)
    # A broker error arriving after the worker took the call: only its run decides.
    assert not finish_early(running, "failed", error="could not queue the call")
    assert fresh(running).status == "running"
    assert finish_early(running, "timeout")  # a running call can still time out
    stored = fresh(running)
    assert stored.status == "timeout"
    assert stored.duration_ms is not None


def test_tool_call_cancel_revokes_the_celery_task(alice_agent, alice_session, settings):
    settings.TOOL_EXECUTION = "celery"
    allow(alice_agent, "get_current_time")
    record = admit_call(alice_session, "get_current_time", UTC).record
    with mock.patch.object(celery_app.control, "revoke") as revoke:
        assert finish_early(record, "cancelled")
        assert not finish_early(record, "cancelled")  # revoked once
    revoke.assert_called_once_with(fresh(record).celery_task_id)
    assert fresh(record).status == "cancelled"


def test_tool_call_cancel_in_process_revokes_nothing(alice_agent, alice_session, settings):
    settings.TOOL_EXECUTION = "inprocess"
    allow(alice_agent, "get_current_time")
    record = admit_call(alice_session, "get_current_time", UTC).record
    with mock.patch.object(celery_app.control, "revoke") as revoke:
        assert finish_early(record, "cancelled")
    revoke.assert_not_called()


def test_tool_call_timeout_revokes_nothing(alice_agent, alice_session, settings):
    settings.TOOL_EXECUTION = "celery"
    allow(alice_agent, "get_current_time")
    record = admit_call(alice_session, "get_current_time", UTC).record
    with mock.patch.object(celery_app.control, "revoke") as revoke:
        assert finish_early(record, "timeout")
    revoke.assert_not_called()  # the worker claims nothing anyway


def test_tool_call_cancel_by_key_cancels_the_unfinished_call(alice_agent, alice_session, settings):
    settings.TOOL_EXECUTION = "inprocess"
    allow(alice_agent, "get_current_time")
    record = admit_call(alice_session, "get_current_time", UTC).record
    key = fresh(record).idempotency_key
    with tenant_scope(alice_agent.tenant_id):
        assert tool_call_cancel_by_key(key)
        assert not tool_call_cancel_by_key(key)  # finished: nothing more to cancel
        assert not tool_call_cancel_by_key("f" * 64)  # no such call
    stored = fresh(record)
    assert (stored.status, stored.error) == ("cancelled", "cancelled")
    assert tool_call_response(record=stored) == {"error": "cancelled"}


@pytest.mark.django_db(transaction=True)
def test_tool_call_finished_early_after_its_session_was_deleted_still_names_it(
    alice_agent, alice_session
):
    allow(alice_agent, "get_current_time")
    record = admit_call(alice_session, "get_current_time", UTC).record
    session_id = alice_session.pk
    with tenant_scope(alice_agent.tenant_id):
        alice_session.delete()
    assert finish_early(record, "timeout")
    stored = fresh(record)
    assert stored.status == "timeout"
    assert stored.session_id is None
    assert stored.session_ref == session_id
