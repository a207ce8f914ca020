"""The idempotency key, and a re-ask: the same request asked again (after a reconnect the
model asks with a new call id) is answered from the first call and runs nothing more."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.tools.conftest import admit_call, allow, call_request, execute, start_call
from tools.idempotency import canonical_arguments, tool_call_key
from tools.models import OutboxEmail, ToolCallRecord

EMAIL = {"to": "bob@example.com", "subject": "Hi", "body": "the secret body"}
UTC = {"timezone": "UTC"}
SESSION = str(uuid.UUID(int=1))


def key(**changes) -> str:
    fields = {"session_ref": SESSION, "turn": 3, "name": "send_email", "args": EMAIL,
              "occurrence": 0}  # fmt: skip
    return tool_call_key(**{**fields, **changes})


# --- the key ---------------------------------------------------------------------------------


def test_tool_call_key_is_the_same_for_the_same_request():
    assert key() == key(args=dict(reversed(EMAIL.items())))
    assert re.fullmatch(r"[0-9a-f]{64}", key())


@pytest.mark.parametrize(
    "change",
    [
        {"session_ref": str(uuid.UUID(int=2))},
        {"turn": 4},
        {"name": "send_mail"},
        {"args": {**EMAIL, "subject": "Hi!"}},
        {"args": {k: v for k, v in EMAIL.items() if k != "body"}},
        {"occurrence": 1},
    ],
)
def test_tool_call_key_differs_when_anything_differs(change):
    assert key(**change) != key()


def test_tool_call_key_fields_do_not_run_into_each_other():
    # "1" + "23" must not read as "12" + "3": the fields are separated.
    assert key(turn=1, name="23x") != key(turn=12, name="3x")


def test_canonical_arguments_integral_floats_key_order_and_nesting():
    model_a = {"n": 2, "filter": {"b": [1.0, {"y": 2.0, "x": 3}], "a": True}}
    model_b = {"filter": {"a": True, "b": [1, {"x": 3.0, "y": 2}]}, "n": 2.0}
    assert canonical_arguments(model_a) == canonical_arguments(model_b)
    assert canonical_arguments(model_a) == '{"filter":{"a":true,"b":[1,{"x":3,"y":2}]},"n":2}'
    assert key(args=model_a) == key(args=model_b)


def test_canonical_arguments_keeps_what_differs():
    assert canonical_arguments({"n": 2.5}) != canonical_arguments({"n": 2})
    assert canonical_arguments({"n": True}) != canonical_arguments({"n": 1})
    assert canonical_arguments({"n": "2"}) != canonical_arguments({"n": 2})
    assert canonical_arguments({"s": "café"}) == '{"s":"café"}'


def test_tool_call_request_key_is_made_of_its_request_not_its_call_id(alice_session):
    first = call_request(alice_session, "send_email", EMAIL, call_id="c1", turn=3)
    reask = call_request(alice_session, "send_email", EMAIL, call_id="c-new", turn=3)
    second = call_request(alice_session, "send_email", EMAIL, turn=3, occurrence=1)
    assert first.key == reask.key == key(session_ref=str(alice_session.pk))
    assert second.key == key(session_ref=str(alice_session.pk), occurrence=1)


# --- a re-ask --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_reask_of_a_finished_call_is_answered_from_the_first_row(
    alice_agent, alice_session, synced_tools, tool_threads
):
    allow(alice_agent, "send_email")
    first = admit_call(alice_session, "send_email", EMAIL, call_id="c1", turn=2)
    execute(first.record)
    reask = admit_call(alice_session, "send_email", EMAIL, call_id="c1-again", turn=2)
    (row,) = ToolCallRecord.unscoped.all()
    assert reask.repeat
    assert not first.repeat
    assert (reask.record.pk, reask.record.call_id, reask.record.status) == (
        row.pk,
        "c1",
        "succeeded",
    )
    assert reask.record.result == row.result
    execute(reask.record)  # even run again, it runs nothing
    assert OutboxEmail.unscoped.count() == 1


def test_a_reask_over_the_rate_limit_is_answered_from_the_first_call(alice_agent, alice_session):
    allow(alice_agent, "get_current_time", rate_limit="1/min")
    first = admit_call(alice_session, "get_current_time", UTC, call_id="c1")
    reask = admit_call(alice_session, "get_current_time", UTC, call_id="c2")
    assert reask.repeat
    assert reask.record.pk == first.record.pk
    assert reask.record.status == "queued"  # the first call's outcome, not "rate limit"
    assert ToolCallRecord.unscoped.count() == 1  # no refusal written for it
    # Another request is over the limit.
    other = admit_call(alice_session, "get_current_time", UTC, call_id="c3", turn=1)
    assert not other.repeat
    assert other.record.status == "rejected"
    assert "rate limit 1/min exceeded" in other.record.rejection_reason


def test_a_reask_of_a_finished_call_over_the_rate_limit_gets_the_first_outcome(
    alice_agent, alice_session
):
    allow(alice_agent, "get_current_time", rate_limit="1/min")
    first = admit_call(alice_session, "get_current_time", UTC, call_id="c1").record
    ToolCallRecord.unscoped.filter(pk=first.pk).update(status="running")
    ToolCallRecord.unscoped.filter(pk=first.pk).update(status="succeeded", result={"t": "now"})
    reask = admit_call(alice_session, "get_current_time", UTC, call_id="c2")
    assert reask.repeat
    assert (reask.record.status, reask.record.result) == ("succeeded", {"t": "now"})
    assert ToolCallRecord.unscoped.count() == 1


def test_a_reask_of_a_queued_or_running_call_returns_it(alice_agent, alice_session):
    allow(alice_agent, "get_current_time")
    queued = admit_call(alice_session, "get_current_time", UTC, call_id="q1").record
    reask = admit_call(alice_session, "get_current_time", UTC, call_id="q2")
    assert reask.repeat
    assert (reask.record.pk, reask.record.status) == (queued.pk, "queued")
    running = start_call(alice_session, alice_agent, "r1", "get_current_time", {"timezone": "CET"})
    reask = admit_call(alice_session, "get_current_time", {"timezone": "CET"}, call_id="r2")
    assert reask.repeat
    assert (reask.record.pk, reask.record.status) == (running.pk, "running")
    assert ToolCallRecord.unscoped.count() == 2


def test_a_reask_of_a_refused_call_returns_the_refusal(alice_session):
    first = admit_call(alice_session, "nope", {}, call_id="c1").record
    reask = admit_call(alice_session, "nope", {}, call_id="c2")
    assert reask.repeat
    assert (reask.record.pk, reask.record.status) == (first.pk, "rejected")
    assert reask.record.rejection_reason == ToolCallRecord.unscoped.get().rejection_reason


def test_a_second_identical_call_of_the_same_turn_is_a_second_request(alice_agent, alice_session):
    allow(alice_agent, "get_current_time")
    first = admit_call(alice_session, "get_current_time", UTC, call_id="c1")
    second = admit_call(alice_session, "get_current_time", UTC, call_id="c2", occurrence=1)
    assert not second.repeat
    assert second.record.pk != first.record.pk
    keys = set(ToolCallRecord.unscoped.values_list("idempotency_key", flat=True))
    assert keys == {
        call_request(alice_session, "get_current_time", UTC, occurrence=n).key for n in (0, 1)
    }


def test_two_admissions_of_one_request_write_one_row(alice_agent, alice_session):
    allow(alice_agent, "get_current_time")
    first = admit_call(alice_session, "get_current_time", UTC, call_id="c1").record
    # No look-up first: the key's unique index meets the twin, whose row answers.
    twin = admit_call(alice_session, "get_current_time", UTC, call_id="c2")
    assert twin.repeat
    assert twin.record.pk == first.pk
    assert ToolCallRecord.unscoped.count() == 1
