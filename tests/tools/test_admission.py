"""Admission: refusals, the accepted call's audit row, and sending its task on commit."""

from __future__ import annotations

import json
import uuid

import pytest
from kombu import Exchange, Queue

from tests.factories import AgentFactory
from tests.tools.conftest import admit_call, allow, execute, make_session, make_webhook
from tools.allowlist import tool_allowlist_for_agent
from tools.models import AgentTool, ToolCallRecord
from tools.outcome import tool_call_response
from tools.registry import get_tool, unregister
from tools.services import agent_tool_update
from tools.tasks import tool_call_execute_task
from voice_platform.celery import app as celery_app
from voice_platform.crypto import decrypt_str
from voice_platform.tenancy.scope import tenant_scope

EMAIL = {"to": "bob@example.com", "subject": "Hi", "body": "the secret body"}
UTC = {"timezone": "UTC"}

transactional = pytest.mark.django_db(transaction=True)


def stored() -> ToolCallRecord:
    (record,) = ToolCallRecord.unscoped.all()
    return record


# --- refusals --------------------------------------------------------------------------------


def test_tool_call_admit_rejects_tool_not_allowlisted(alice_agent, alice_session):
    admission = admit_call(alice_session, "send_email", EMAIL)
    record = stored()
    assert admission.record.pk == record.pk
    assert not admission.repeat
    assert record.status == "rejected"
    assert record.rejection_reason == "tool 'send_email' is not allowlisted for this agent"
    assert record.finished_at is not None
    assert record.pending_arguments == ""
    # Unknown tool, unknown sensitivity: names only.
    assert record.arguments == {key: "[redacted]" for key in EMAIL}
    assert tool_call_response(record=record) == {"error": record.rejection_reason}


def test_tool_call_admit_rejects_disabled_entry_and_other_agents_entry(alice_agent, alice_session):
    allow(alice_agent, "send_email", enabled=False)
    allow(AgentFactory(tenant=alice_agent.tenant), "get_current_time")
    admit_call(alice_session, "send_email", EMAIL)
    admit_call(alice_session, "get_current_time", UTC, call_id="c2")
    reasons = dict(ToolCallRecord.unscoped.values_list("call_id", "rejection_reason"))
    assert reasons == {
        "c1": "tool 'send_email' is not allowlisted for this agent",
        "c2": "tool 'get_current_time' is not allowlisted for this agent",
    }


def test_tool_call_admit_rejects_another_tenants_entry(alice_session, charlie_agent):
    allow(charlie_agent, "get_current_time")  # Charlie's agent may: Alice's may not
    admit_call(alice_session, "get_current_time", UTC)
    record = stored()
    assert (record.tenant_id, record.status) == (alice_session.tenant_id, "rejected")
    assert "not allowlisted" in record.rejection_reason


def test_tool_call_admit_rejects_tool_missing_from_code(alice_agent, alice_session, scratch_tools):
    allow(alice_agent, "t_boom")
    unregister("t_boom")
    admit_call(alice_session, "t_boom", {})
    assert stored().rejection_reason == "tool 't_boom' is not allowlisted for this agent"


def test_tool_call_admit_rejects_bad_arguments_naming_the_field(alice_agent, alice_session):
    allow(alice_agent, "send_email")
    admit_call(alice_session, "send_email", {**EMAIL, "to": "nope"})
    record = stored()
    assert record.status == "rejected"
    assert record.rejection_reason.startswith("invalid argument 'to'")
    assert record.arguments["body"] == "[redacted]"
    assert record.pending_arguments == ""


@pytest.mark.parametrize("bad", ["\x00", "\ud800", "a\udfffb"])
def test_tool_call_admit_rejects_text_postgresql_cannot_store(alice_agent, alice_session, bad):
    # JSON's "\u0000" and unpaired "\ud800" escapes: the model can send them, and neither
    # the audit row (jsonb) nor the tool's own writes can store them (before: DataError).
    allow(alice_agent, "send_email")
    admit_call(alice_session, "send_email", {**EMAIL, "subject": f"Hi{bad}"})
    record = stored()
    assert record.status == "rejected"
    assert record.rejection_reason == (
        "invalid argument 'subject': text may not contain NUL characters or lone UTF-16 surrogates"
    )
    # The audit keeps what was asked, readable: the unstorable characters as U+FFFD.
    assert record.arguments["subject"] == "Hi" + bad.translate(
        {0: 0xFFFD, 0xD800: 0xFFFD, 0xDFFF: 0xFFFD}
    )
    assert record.arguments["body"] == "[redacted]"


def test_tool_call_admit_stores_any_json_the_model_sends(alice_agent, alice_session):
    # Unknown tool, unknown name and arguments: the audit row is written whatever they hold.
    admit_call(alice_session, "no\x00such", {"k\ud800": float("inf"), "n": [float("nan"), "\x00"]})
    record = stored()
    assert record.status == "rejected"
    assert record.tool_name == "no\ufffdsuch"
    assert record.rejection_reason == "tool 'no\\x00such' is not allowlisted for this agent"
    assert set(record.arguments) == {"k\ufffd", "n"}


def test_tool_call_admit_rejects_by_policy(alice_agent, alice_session):
    allow(alice_agent, "send_email", policy={"allowed_domains": ["example.com"]})
    admit_call(alice_session, "send_email", {**EMAIL, "to": "bob@evil.com"})
    record = stored()
    assert record.status == "rejected"
    assert record.rejection_reason == "recipient bob@evil.com is not allowed by policy"


def test_tool_call_admit_fails_closed_on_invalid_stored_policy(alice_agent, alice_session):
    entry = allow(alice_agent, "send_email")
    AgentTool.unscoped.filter(pk=entry.pk).update(policy={"allowed_domains": "not-a-list"})
    admit_call(alice_session, "send_email", EMAIL)
    record = stored()
    assert record.status == "rejected"
    assert "the policy of tool 'send_email' is invalid" in record.rejection_reason


def test_tool_call_admit_rate_limits_per_end_user(alice_agent):
    allow(alice_agent, "get_current_time", rate_limit="2/min")
    session = make_session(alice_agent, end_user_id="rl-user")
    other = make_session(alice_agent, end_user_id="rl-other")
    # Three different requests (turns) of one end user, then one of another end user.
    statuses = [
        admit_call(session, "get_current_time", UTC, call_id=f"c{turn}", turn=turn)
        for turn in range(3)
    ]
    assert [a.record.status for a in statuses] == ["queued", "queued", "rejected"]
    refused = ToolCallRecord.unscoped.get(status="rejected")
    assert refused.rejection_reason == "rate limit 2/min exceeded for tool 'get_current_time'"
    assert admit_call(other, "get_current_time", UTC).record.status == "queued"


def test_tool_call_admit_webhook_tool_validates_json_schema(alice, alice_agent, alice_session):
    webhook = make_webhook(alice.tenant, url="https://hooks.example.com/x", timeout_seconds=4)
    AgentTool.unscoped.create(tenant=alice.tenant, agent=alice_agent, webhook_tool=webhook)
    admit_call(alice_session, "order_status", {"order_id": 5}, call_id="bad")
    admit_call(alice_session, "order_status", {}, call_id="missing")
    admit_call(alice_session, "order_status", {"order_id": "A1"}, call_id="good")
    rows = {r.call_id: r for r in ToolCallRecord.unscoped.all()}
    assert rows["bad"].rejection_reason == "invalid argument 'order_id': 5 is not of type 'string'"
    assert (
        rows["missing"].rejection_reason == "invalid arguments: 'order_id' is a required property"
    )
    good = rows["good"]
    assert (good.status, good.is_webhook, good.timeout_seconds) == ("queued", True, 4)
    assert json.loads(decrypt_str(good.pending_arguments)) == {"order_id": "A1"}


# --- the accepted call's row -----------------------------------------------------------------


def test_tool_call_admit_accepts_with_redacted_audit_and_encrypted_arguments(
    alice_agent, alice_session
):
    entry = allow(
        alice_agent, "send_email", timeout_seconds=3.5, policy={"allowed_domains": ["example.com"]}
    )
    admission = admit_call(alice_session, "send_email", EMAIL, turn=4)
    record = stored()
    assert admission.record.pk == record.pk
    assert not admission.repeat
    assert record.status == "queued"
    assert (record.rejection_reason, record.started_at, record.finished_at) == ("", None, None)
    assert record.queued_at is not None
    assert record.arguments == {**EMAIL, "body": "[redacted]"}
    assert "the secret body" not in record.pending_arguments
    assert json.loads(decrypt_str(record.pending_arguments)) == EMAIL
    assert (record.session_id, record.session_ref) == (alice_session.pk, alice_session.pk)
    assert (record.agent_id, record.agent_tool_id) == (alice_agent.pk, entry.pk)
    assert record.end_user_id == alice_session.end_user_id
    assert (record.call_id, record.tool_name, record.turn) == ("c1", "send_email", 4)
    assert record.idempotency_key == admission_key(alice_session, "send_email", EMAIL, turn=4)
    assert uuid.UUID(record.celery_task_id)
    assert (record.timeout_seconds, record.behavior, record.scheduling) == (3.5, "BLOCKING", "")


def admission_key(session, name, args, *, turn=0, occurrence=0) -> str:
    from tools.idempotency import tool_call_key

    return tool_call_key(
        session_ref=str(session.pk), turn=turn, name=name, args=args, occurrence=occurrence
    )


def test_tool_call_admit_uses_tool_default_timeout_and_non_blocking_scheduling(
    alice_agent, alice_session, scratch_tools
):
    allow(alice_agent, "t_background")
    admit_call(alice_session, "t_background", {})
    record = stored()
    assert record.timeout_seconds == get_tool("t_background").timeout
    assert (record.behavior, record.scheduling) == ("NON_BLOCKING", "INTERRUPT")


def test_tool_call_admit_reloads_the_sessions_allowlist_after_an_entry_changes(
    alice_agent, alice_session
):
    entry = allow(alice_agent, "send_email", policy={"allowed_domains": ["example.com"]})
    with tenant_scope(alice_agent.tenant_id):
        allowlist = tool_allowlist_for_agent(agent=alice_agent)
    first = admit_call(alice_session, "send_email", EMAIL, allowlist=allowlist)
    assert first.record.status == "queued"
    assert first.allowlist is allowlist
    with tenant_scope(alice_agent.tenant_id):
        agent_tool_update(agent_tool=entry, policy={"allowed_domains": ["example.org"]})
    second = admit_call(
        alice_session, "send_email", EMAIL, call_id="c2", turn=1, allowlist=allowlist
    )
    assert second.record.status == "rejected"
    assert "bob@example.com" in second.record.rejection_reason
    assert second.allowlist is not allowlist  # the session keeps the reloaded copy
    with tenant_scope(alice_agent.tenant_id):
        agent_tool_update(agent_tool=entry, enabled=False)
    third = admit_call(
        alice_session, "send_email", EMAIL, call_id="c3", turn=2, allowlist=second.allowlist
    )
    assert third.record.rejection_reason == "tool 'send_email' is not allowlisted for this agent"
    assert ToolCallRecord.unscoped.get(pk=third.record.pk).status == "rejected"


# --- sending the task ------------------------------------------------------------------------


def take_message(queue_name: str):
    """The one message waiting in ``queue_name`` of the configured broker (Redis in CI, else
    kombu's in-memory transport), taken off and the queue deleted."""
    queue = Queue(queue_name, Exchange(queue_name, type="direct"), routing_key=queue_name)
    with celery_app.connection_for_read() as connection:
        simple = connection.SimpleQueue(queue)
        try:
            message = simple.get(timeout=10)
            message.ack()
            return message
        finally:
            simple.queue.delete()
            simple.close()


@pytest.fixture
def tool_queue(settings):
    """A queue of this test's own: no worker on the same broker takes its message."""
    settings.TOOL_CELERY_QUEUE = f"test_tools_{uuid.uuid4().hex[:8]}"
    return settings.TOOL_CELERY_QUEUE


def test_tool_call_admit_dispatch_sends_the_task_to_the_tool_queue_on_commit(
    alice_agent, alice_session, tool_queue, django_capture_on_commit_callbacks, monkeypatch
):
    allow(alice_agent, "get_current_time")
    sent = []
    real_apply_async = tool_call_execute_task.apply_async

    def recording_apply_async(*args, **kwargs):
        sent.append(kwargs)
        return real_apply_async(*args, **kwargs)

    monkeypatch.setattr(tool_call_execute_task, "apply_async", recording_apply_async)
    with django_capture_on_commit_callbacks() as on_commit:
        admission = admit_call(alice_session, "get_current_time", UTC, dispatch=True)
    assert sent == []  # not before the row is committed: a worker must find it
    assert len(on_commit) == 1
    on_commit[0]()
    record = stored()
    message = take_message(tool_queue)
    assert message.headers["id"] == record.celery_task_id
    assert message.headers["task"] == tool_call_execute_task.name
    args, kwargs, _ = message.payload
    assert (args, kwargs) == ([], {"tenant_id": alice_agent.tenant_id, "record_id": record.pk})
    assert "UTC" not in json.dumps(message.payload)  # ids only: the row holds the arguments
    assert [s["queue"] for s in sent] == [tool_queue]
    assert (admission.record.pk, record.status) == (record.pk, "queued")


def test_tool_call_admit_dispatch_sends_nothing_for_a_refused_call(
    alice_session, django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    monkeypatch.setattr(tool_call_execute_task, "apply_async", lambda **kw: sent.append(kw))
    with django_capture_on_commit_callbacks(execute=True) as on_commit:
        admit_call(alice_session, "get_current_time", UTC, dispatch=True)
    assert (on_commit, sent) == ([], [])
    assert stored().status == "rejected"


def test_tool_call_admit_with_broker_down_fails_the_call_in_one_record(
    alice_agent, alice_session, django_capture_on_commit_callbacks, monkeypatch
):
    allow(alice_agent, "get_current_time")

    def broker_down(**kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tool_call_execute_task, "apply_async", broker_down)
    # The session's scope is open when its admission commits (no outer transaction there).
    with (
        tenant_scope(alice_agent.tenant_id),
        django_capture_on_commit_callbacks(execute=True),
    ):
        admission = admit_call(alice_session, "get_current_time", UTC, dispatch=True)
    record = stored()
    assert admission.record.pk == record.pk
    assert record.status == "failed"
    assert record.error == "could not queue the call: ConnectionError: broker down"
    assert (record.started_at, record.pending_arguments) == (None, "")
    assert record.finished_at is not None
    # The model is told (the session answers from the admission's record).
    assert admission.record.status == "failed"
    assert tool_call_response(record=admission.record) == {"error": record.error}


@transactional
def test_tool_call_admit_dispatched_message_runs_the_call(
    alice_agent, alice_session, synced_tools, tool_queue, tool_threads
):
    allow(alice_agent, "get_current_time")
    admit_call(alice_session, "get_current_time", UTC, dispatch=True)  # commits: sent
    _, kwargs, _ = take_message(tool_queue).payload
    tool_call_execute_task.apply(kwargs=kwargs).get()  # outside any scope, as a worker
    record = stored()
    assert record.status == "succeeded"
    assert record.result["timezone"] == "UTC"
    assert execute(record).finished_at == record.finished_at
