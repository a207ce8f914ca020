"""end_call and transfer_call through the path the model's calls take: admission
(allowlist, arguments, the agent's policy, the audit row), then the worker (claim, run in
the tenant's scope, outcome), and what they record on the session's phone call."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any, cast

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from telephony.actions import phone_call_action_pending
from telephony.models import PhoneCall
from tests.factories import AgentFactory, PhoneCallFactory, PhoneNumberFactory
from tests.tools.conftest import ToolThreads, admit_call, allow, call_request, make_session
from tools import execution
from tools.admission import tool_call_admit
from tools.allowlist import tool_allowlist_for_agent
from tools.execution import tool_call_execute
from tools.models import Tool, ToolCallRecord
from tools.registry import get_tool
from tools.services import agent_tool_create, tool_sync_registry
from tools.tasks import tool_call_execute_task
from voice_platform.tenancy.scope import tenant_scope

pytestmark = pytest.mark.django_db(transaction=True)  # tools run in their own threads

TRANSFER_TO = "+14155550199"


@pytest.fixture(autouse=True)
def tool_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This test's own tool threads, joined at the end (as tests/tools does)."""
    monkeypatch.setattr(execution, "_pool", None)
    try:
        yield
    finally:
        ToolThreads().join()


@pytest.fixture
def phone_agent(alice: Any) -> Any:
    tool_sync_registry()  # transactional tests flush the Tool rows
    agent = AgentFactory(tenant=alice.tenant)
    allow(agent, "end_call")
    allow(agent, "transfer_call", policy={"allowed_numbers": [TRANSFER_TO, "+442071838750"]})
    return agent


@pytest.fixture
def session(phone_agent: Any) -> Any:
    return make_session(phone_agent, end_user_id="+14155550100")


def connect_call(session: Any, **fields: Any) -> PhoneCall:
    number = PhoneNumberFactory(tenant_id=session.tenant_id, agent_id=session.agent_id)
    call = PhoneCallFactory(
        tenant_id=session.tenant_id, phone_number=number, session=session,
        status=PhoneCall.Status.CONNECTED, **fields,
    )  # fmt: skip
    return cast("PhoneCall", call)  # the factory returns the saved model


def run(session: Any, name: str, args: dict[str, Any], *, n: int = 0) -> ToolCallRecord:
    """One function call of the model: admitted, then run by its worker when accepted."""
    record = admit_call(session, name, args, call_id=f"c{n}", turn=n).record
    if record.status == ToolCallRecord.Status.QUEUED:
        with tenant_scope(session.tenant_id):
            record = tool_call_execute(record_id=record.pk, notify=lambda finished: None)
    return record


def reloaded(call: PhoneCall) -> PhoneCall:
    return PhoneCall.unscoped.get(pk=call.pk)  # unscoped: the test reads outside any scope


# --- registration ----------------------------------------------------------------------------


def test_the_phone_tools_are_registered_and_mirrored_for_allowlisting():
    tool_sync_registry()
    for name in ("end_call", "transfer_call"):
        spec = get_tool(name)
        assert spec is not None
        assert spec.fn.__module__ == "telephony.tools"
        assert Tool.objects.get(name=name).available
    assert Tool.objects.get(name="transfer_call").policy_schema["properties"]["allowed_numbers"]


def test_their_declarations_tell_the_model_what_they_do():
    end = get_tool("end_call").function_declaration()
    assert "goodbye" in end.description.lower()
    assert not end.parameters.required
    assert set(end.parameters.properties) == {"reason"}
    transfer = get_tool("transfer_call").function_declaration()
    assert transfer.parameters.required == ["to"]
    assert "+14155550123" in transfer.parameters.properties["to"].description


# --- end_call --------------------------------------------------------------------------------


def test_end_call_records_a_hang_up_on_the_sessions_phone_call(session):
    call = connect_call(session)
    record = run(session, "end_call", {"reason": "the caller said bye"})
    assert record.status == ToolCallRecord.Status.SUCCEEDED, record.error
    assert record.result == {"status": "ending"}
    assert record.arguments == {"reason": "the caller said bye"}  # the audit keeps it
    call = reloaded(call)
    assert (call.action, call.action_target, call.action_done_at) == ("hang_up", "", None)


def test_end_call_twice_records_once_and_answers_the_same(session):
    call = connect_call(session)
    first = run(session, "end_call", {}, n=0)
    done_at = timezone.now()
    PhoneCall.unscoped.filter(pk=call.pk).update(action_done_at=done_at)  # carried out
    second = run(session, "end_call", {}, n=1)
    assert first.result == second.result == {"status": "ending"}
    assert reloaded(call).action_done_at == done_at  # not re-armed
    with tenant_scope(session.tenant_id):
        assert phone_call_action_pending(session_id=session.pk) is None


def test_a_transfer_after_end_call_changes_nothing_and_says_the_call_is_ending(session):
    call = connect_call(session)
    run(session, "end_call", {}, n=0)
    record = run(session, "transfer_call", {"to": TRANSFER_TO}, n=1)
    assert record.status == ToolCallRecord.Status.SUCCEEDED, record.error
    assert record.result == {"status": "ending"}
    assert (reloaded(call).action, reloaded(call).action_target) == ("hang_up", "")


def test_end_call_in_a_session_that_is_not_a_phone_call_fails_with_the_reason(session):
    record = run(session, "end_call", {})
    assert record.status == ToolCallRecord.Status.FAILED
    assert record.error == "PolicyViolation: this session is not a phone call"


def test_end_call_after_the_call_ended_fails_and_records_nothing(session):
    call = connect_call(session, ended_at=timezone.now())
    PhoneCall.unscoped.filter(pk=call.pk).update(status=PhoneCall.Status.ENDED)
    record = run(session, "end_call", {})
    assert record.status == ToolCallRecord.Status.FAILED
    assert record.error == "PolicyViolation: the phone call has already ended"
    assert reloaded(call).action == ""


def test_a_session_of_another_tenant_cannot_act_on_alices_call(session, charlie):
    """Charlie's tool call naming Alice's session: Charlie's scope sees no such phone call."""
    alices_call = connect_call(session)
    tool_sync_registry()
    charlies_agent = AgentFactory(tenant=charlie.tenant)
    allow(charlies_agent, "end_call")
    request = replace(call_request(session, "end_call", {}), tenant_id=charlie.tenant.pk)
    with tenant_scope(charlie.tenant.pk):
        allowlist = tool_allowlist_for_agent(agent=charlies_agent)
        record = tool_call_admit(request=request, allowlist=allowlist, dispatch=None).record
        assert record.status == ToolCallRecord.Status.QUEUED
        record = tool_call_execute(record_id=record.pk, notify=lambda finished: None)
    assert record.status == ToolCallRecord.Status.FAILED
    assert record.error == "PolicyViolation: this session is not a phone call"
    assert reloaded(alices_call).action == ""


def test_end_call_runs_in_a_celery_task_that_opens_its_own_scope(session):
    call = connect_call(session)
    record = admit_call(session, "end_call", {}).record
    # Outside any scope on purpose: eager mode would inherit the caller's.
    tool_call_execute_task.apply(kwargs={"tenant_id": session.tenant_id, "record_id": record.pk})
    assert ToolCallRecord.unscoped.get(pk=record.pk).result == {"status": "ending"}
    assert reloaded(call).action == "hang_up"


# --- transfer_call ---------------------------------------------------------------------------


def test_transfer_call_to_an_allowed_number_records_the_transfer(session):
    call = connect_call(session)
    record = run(session, "transfer_call", {"to": "+1 (415) 555-0199"})
    assert record.status == ToolCallRecord.Status.SUCCEEDED, record.error
    assert record.result == {"status": "transferring", "to": TRANSFER_TO}
    assert record.arguments == {"to": TRANSFER_TO}
    call = reloaded(call)
    assert (call.action, call.action_target) == ("transfer", TRANSFER_TO)


@pytest.mark.parametrize(
    "to", ["14155550199", "+0415555019", "+1415", "call mom", "+1415555019912345"]
)
def test_transfer_call_refuses_a_number_that_is_not_e164(session, to):
    call = connect_call(session)
    record = run(session, "transfer_call", {"to": to})
    assert record.status == ToolCallRecord.Status.REJECTED
    assert record.rejection_reason == (
        f"invalid argument 'to': {to!r} is not an E.164 number (like +14155550123)"
    )
    assert reloaded(call).action == ""


def test_transfer_call_refuses_a_number_the_policy_does_not_allow(session):
    call = connect_call(session)
    record = run(session, "transfer_call", {"to": "+14155550111"})
    assert record.status == ToolCallRecord.Status.REJECTED
    assert record.rejection_reason == "transfers to +14155550111 are not allowed by policy"
    assert reloaded(call).action == ""


def test_transfer_call_with_an_empty_allowlist_refuses_every_number(alice):
    tool_sync_registry()
    agent = AgentFactory(tenant=alice.tenant)
    allow(agent, "transfer_call")  # no policy: allowed_numbers is empty
    session = make_session(agent)
    call = connect_call(session)
    record = run(session, "transfer_call", {"to": TRANSFER_TO})
    assert record.status == ToolCallRecord.Status.REJECTED
    assert record.rejection_reason == "no number is allowed for transfers"
    assert reloaded(call).action == ""


def test_transfer_call_in_a_session_that_is_not_a_phone_call_fails_with_the_reason(session):
    record = run(session, "transfer_call", {"to": TRANSFER_TO})
    assert record.status == ToolCallRecord.Status.FAILED
    assert record.error == "PolicyViolation: this session is not a phone call"


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"allowed_numbers": ["0800 123"]}, "is not an E.164 number"),
        ({"allowed_numbers": "+14155550199"}, "allowed_numbers"),
        ({"numbers": [TRANSFER_TO]}, "unexpected policy field 'numbers'"),
    ],
)
def test_the_transfer_policy_is_validated_when_it_is_saved(alice, policy, message):
    tool_sync_registry()
    agent = AgentFactory(tenant=alice.tenant)
    with tenant_scope(alice.tenant.pk), pytest.raises(ValidationError, match=message):
        agent_tool_create(
            tenant=alice.tenant, agent=agent, tool_name="transfer_call", policy=policy
        )


def test_the_transfer_policy_stores_numbers_normalized(alice):
    spec = get_tool("transfer_call")
    policy = spec.validate_policy({"allowed_numbers": ["+44 20 7183 8750"]})
    assert policy.allowed_numbers == ["+442071838750"]
