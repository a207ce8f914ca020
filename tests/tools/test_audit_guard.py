"""The append-only guard: a database trigger refuses changes to finished records."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, transaction
from django.utils import timezone

from tests.tools.conftest import admit_call, allow, start_call
from tools.models import ToolCallRecord
from voice_platform.tenancy.scope import tenant_scope

pytestmark = pytest.mark.django_db


def admitted(session, agent, name="nope", args=None, call_id="c1") -> ToolCallRecord:
    record = admit_call(session, name, args or {}, call_id=call_id).record
    assert record.status == "rejected"  # not allowlisted: finished at once
    return record


@pytest.mark.parametrize(
    "change",
    [
        {"status": "succeeded"},
        {"rejection_reason": "edited"},
        {"arguments": {"to": "someone-else@example.com"}},
        {"result": {"forged": True}},
        {"finished_at": None},
        {"tool_name": "other"},
        {"end_user_id": "someone"},
    ],
)
def test_audit_guard_orm_update_of_finished_record_raises(alice_agent, alice_session, change):
    record = admitted(alice_session, alice_agent)
    assert record.status == "rejected"
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        ToolCallRecord.unscoped.filter(pk=record.pk).update(**change)
    stored = ToolCallRecord.unscoped.get(pk=record.pk)
    assert stored.status == "rejected"
    assert stored.rejection_reason == record.rejection_reason


def test_audit_guard_save_of_finished_record_raises(alice_agent, alice_session):
    record = admitted(alice_session, alice_agent)
    record.rejection_reason = "nothing to see"
    with pytest.raises(DatabaseError), transaction.atomic():
        record.save()


@pytest.mark.parametrize("final", ["succeeded", "failed", "timeout", "cancelled"])
def test_audit_guard_allows_transitions_until_finished(alice_agent, alice_session, final):
    allow(alice_agent, "get_current_time")
    record = start_call(alice_session, alice_agent, "c1", "get_current_time", {"timezone": "UTC"})
    assert record.status == "running"
    rows = ToolCallRecord.unscoped.filter(pk=record.pk)
    rows.update(result_preview="{}")
    rows.update(status=final, finished_at=timezone.now())
    assert ToolCallRecord.unscoped.get(pk=record.pk).status == final
    with pytest.raises(DatabaseError), transaction.atomic():
        rows.update(status="running")


def test_audit_guard_lets_deleted_session_and_agent_null_their_keys(
    alice, alice_agent, alice_session
):
    record = admitted(alice_session, alice_agent)
    session_id = alice_session.pk
    with tenant_scope(alice.tenant.pk):
        alice_session.delete()
        alice_agent.delete()
    stored = ToolCallRecord.unscoped.get(pk=record.pk)
    assert stored.session_id is None
    assert stored.agent_id is None
    assert stored.session_ref == session_id  # the audit still names the session


def test_audit_guard_refuses_repointing_a_foreign_key(alice, alice_agent, alice_session):
    from tests.factories import AgentFactory

    record = admitted(alice_session, alice_agent)
    other = AgentFactory(tenant=alice.tenant)
    with pytest.raises(DatabaseError), transaction.atomic():
        ToolCallRecord.unscoped.filter(pk=record.pk).update(agent=other)


def test_audit_guard_tenant_deletion_cascades(alice, alice_agent, alice_session, charlie):
    admitted(alice_session, alice_agent)
    alice.tenant.delete()
    assert not ToolCallRecord.unscoped.exists()
