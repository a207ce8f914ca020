"""Carrying out what end_call / transfer_call recorded: the pending action, the one claim
(two callers at once, real PostgreSQL), the carrier request it makes, and its failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from django.db import connections, transaction
from django.utils import timezone

from conftest import require_postgres
from telephony import actions, carrier
from telephony.actions import (
    PendingAction,
    phone_call_action_carry_out,
    phone_call_action_pending,
    phone_call_action_record,
)
from telephony.carrier import CarrierError, CarrierRequest
from telephony.models import PhoneCall
from tests.factories import PhoneCallFactory, VoiceSessionFactory
from tools.registry import PolicyViolation
from voice_platform.tenancy.scope import tenant_scope

TRANSFER_TO = "+14155550199"


@pytest.fixture(autouse=True)
def recording_carrier(settings: Any) -> Iterator[list[CarrierRequest]]:
    settings.PHONE_CARRIER_CLIENT = "recording"
    carrier.recorded_requests.clear()
    yield carrier.recorded_requests
    carrier.recorded_requests.clear()


def phone_call(tenant: Any, **fields: Any) -> PhoneCall:
    session = VoiceSessionFactory(tenant=tenant, status="active")
    call = PhoneCallFactory(
        tenant=tenant, session=session, status=PhoneCall.Status.CONNECTED, **fields
    )
    return cast("PhoneCall", call)  # the factory returns the saved model


def reloaded(call: PhoneCall) -> PhoneCall:
    return PhoneCall.unscoped.get(pk=call.pk)  # unscoped: the test reads outside any scope


def in_scope(call: PhoneCall, fn: Callable[..., Any], **kwargs: Any) -> Any:
    with tenant_scope(call.tenant_id):
        return fn(**kwargs)


# --- pending ---------------------------------------------------------------------------------


def test_pending_is_the_recorded_action_not_yet_carried_out(alice):
    call = phone_call(alice.tenant, action="transfer", action_target=TRANSFER_TO)
    assert in_scope(call, phone_call_action_pending, session_id=call.session_id) == PendingAction(
        call_id=call.pk, call_sid=call.call_sid, action="transfer", target=TRANSFER_TO
    )


def test_nothing_is_pending_without_an_action_or_once_it_is_carried_out(alice):
    quiet = phone_call(alice.tenant)
    done = phone_call(alice.tenant, action="hang_up", action_done_at=timezone.now())
    for call in (quiet, done):
        assert in_scope(call, phone_call_action_pending, session_id=call.session_id) is None


def test_another_tenants_pending_action_is_not_visible(alice, charlie):
    call = phone_call(alice.tenant, action="hang_up")
    with tenant_scope(charlie.tenant.pk):
        assert phone_call_action_pending(session_id=call.session_id) is None


# --- record ----------------------------------------------------------------------------------


def test_record_refuses_another_tenants_session(alice, charlie):
    call = phone_call(alice.tenant)
    with tenant_scope(charlie.tenant.pk), pytest.raises(PolicyViolation, match="not a phone call"):
        phone_call_action_record(
            tenant=charlie.tenant, session_id=call.session_id, action="hang_up"
        )
    assert reloaded(call).action == ""


@pytest.mark.django_db(transaction=True)
def test_record_racing_keeps_the_first_action_and_both_answer_it(alice):
    """Two tools of one call at once: the second waits for the first's row lock, then
    matches nothing and reads the first one's action."""
    require_postgres()
    call = phone_call(alice.tenant)
    first_wrote = threading.Event()
    release_first = threading.Event()
    answers: dict[str, PhoneCall | BaseException] = {}

    def record(name: str, action: str, target: str, hold: bool) -> None:
        try:
            with tenant_scope(call.tenant_id), transaction.atomic():
                answers[name] = phone_call_action_record(
                    tenant=alice.tenant, session_id=call.session_id, action=action, target=target
                )
                if hold:  # keep the transaction (and the row lock) open
                    first_wrote.set()
                    release_first.wait(10)
        except BaseException as exc:
            answers[name] = exc
        finally:
            connections.close_all()

    first = threading.Thread(target=record, args=("first", "hang_up", "", True))
    second = threading.Thread(target=record, args=("second", "transfer", TRANSFER_TO, False))
    first.start()
    assert first_wrote.wait(10)
    second.start()
    time.sleep(0.3)  # the second is now blocked on the row lock
    assert "second" not in answers
    release_first.set()
    first.join(10)
    second.join(10)
    for name in ("first", "second"):
        answer = answers[name]
        assert isinstance(answer, PhoneCall), answer
        assert (answer.action, answer.action_target) == ("hang_up", "")
    assert (reloaded(call).action, reloaded(call).action_target) == ("hang_up", "")


# --- carry out -------------------------------------------------------------------------------


def test_carry_out_a_hang_up_asks_the_carrier_once_and_marks_it_done(alice, recording_carrier):
    call = phone_call(alice.tenant, action="hang_up")
    before = timezone.now()
    assert in_scope(call, phone_call_action_carry_out, call_id=call.pk) == "hung_up"
    [request] = recording_carrier
    assert request.account_sid == call.phone_number.carrier_account.account_sid
    assert (request.call_sid, request.action, request.to_number) == (call.call_sid, "hang_up", "")
    assert reloaded(call).action_done_at >= before
    assert in_scope(call, phone_call_action_carry_out, call_id=call.pk) == "already_done"
    assert len(recording_carrier) == 1


def test_carry_out_a_transfer_dials_the_recorded_number(alice, recording_carrier):
    call = phone_call(alice.tenant, action="transfer", action_target=TRANSFER_TO)
    assert in_scope(call, phone_call_action_carry_out, call_id=call.pk) == "transferred"
    assert [(r.call_sid, r.action, r.to_number) for r in recording_carrier] == [
        (call.call_sid, "transfer", TRANSFER_TO)
    ]


def test_carry_out_without_an_action_does_nothing(alice, charlie, recording_carrier):
    quiet = phone_call(alice.tenant)
    assert in_scope(quiet, phone_call_action_carry_out, call_id=quiet.pk) == "no_action"
    alices = phone_call(alice.tenant, action="hang_up")
    with tenant_scope(charlie.tenant.pk):  # another tenant's call reads as no call
        assert phone_call_action_carry_out(call_id=alices.pk) == "no_action"
    assert recording_carrier == []
    assert reloaded(quiet).action_done_at is None
    assert reloaded(alices).action_done_at is None


def test_carry_out_a_carrier_failure_is_failed_logged_and_stays_claimed(
    alice, monkeypatch, caplog, recording_carrier
):
    call = phone_call(alice.tenant, action="hang_up")

    class Refusing:
        def hang_up(self, *, call_sid: str) -> None:
            raise CarrierError("the carrier refused the request (HTTP 400, error 21220)")

        def transfer(self, *, call_sid: str, to_number: str) -> None:
            raise AssertionError("not a transfer")

    monkeypatch.setattr(actions, "carrier_client_for", lambda *, account: Refusing())
    assert in_scope(call, phone_call_action_carry_out, call_id=call.pk) == "failed"
    assert "HTTP 400, error 21220" in caplog.text
    assert call.call_sid in caplog.text
    assert reloaded(call).action_done_at is not None
    assert in_scope(call, phone_call_action_carry_out, call_id=call.pk) == "already_done"


def test_carry_out_for_a_call_whose_number_was_deleted_fails(alice, recording_carrier):
    call = phone_call(alice.tenant, action="hang_up")
    PhoneCall.unscoped.filter(pk=call.pk).update(phone_number=None)
    assert in_scope(call, phone_call_action_carry_out, call_id=call.pk) == "failed"
    assert recording_carrier == []


@pytest.mark.django_db(transaction=True)
def test_carry_out_by_two_callers_at_once_reaches_the_carrier_once(alice, recording_carrier):
    require_postgres()
    call = phone_call(alice.tenant, action="transfer", action_target=TRANSFER_TO)
    start = threading.Barrier(2)
    results: list[str] = []

    def carry_out() -> None:
        try:
            start.wait(5)
            results.append(in_scope(call, phone_call_action_carry_out, call_id=call.pk))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=carry_out) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == ["already_done", "transferred"]
    assert [(r.call_sid, r.action) for r in recording_carrier] == [(call.call_sid, "transfer")]
