"""Every call gets a final state, even when no stream or carrier request records its end."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions.models import ClientToken, VoiceSession
from telephony.calls import phone_call_sweep
from telephony.models import PhoneCall
from tests.factories import CALL_NONCE, PhoneCallFactory, VoiceSessionFactory
from voice_platform.tenancy.services import hash_secret

pytestmark = pytest.mark.django_db


def test_the_sweep_ends_calls_whose_session_ended_or_that_never_connected(alice, charlie):
    ended_at = timezone.now() - timedelta(minutes=3)
    session = VoiceSessionFactory(
        tenant=alice.tenant, status=VoiceSession.Status.ENDED, end_reason="client_gone",
        ended_at=ended_at,
    )  # fmt: skip
    cut = PhoneCallFactory(
        tenant=alice.tenant, session=session, status=PhoneCall.Status.CONNECTED,
        reason="server_restart",
    )  # fmt: skip
    live = PhoneCallFactory(
        tenant=charlie.tenant, status=PhoneCall.Status.CONNECTED,
        session=VoiceSessionFactory(tenant=charlie.tenant, status=VoiceSession.Status.ACTIVE),
    )  # fmt: skip
    stale = PhoneCallFactory(tenant=charlie.tenant, status=PhoneCall.Status.RINGING)
    PhoneCall.unscoped.filter(pk=stale.pk).update(started_at=ended_at)
    fresh = PhoneCallFactory(tenant=alice.tenant, status=PhoneCall.Status.RINGING)

    assert phone_call_sweep() == 2
    rows = {c.pk: c for c in PhoneCall.unscoped.all()}
    assert (rows[cut.pk].status, rows[cut.pk].reason) == ("ended", "client_gone")
    assert rows[cut.pk].ended_at == ended_at
    assert (rows[stale.pk].status, rows[stale.pk].reason) == ("ended", "stream_failed")
    assert rows[live.pk].status == "connected"
    assert rows[fresh.pk].status == "ringing"
    assert phone_call_sweep() == 0  # nothing twice


def _stream_ended(call):
    import xml.etree.ElementTree as ET

    from tests.telephony.conftest import signed_post

    account = call.phone_number.carrier_account
    response = signed_post(
        f"/phone/twilio/{account.public_id}/stream-ended?n={CALL_NONCE}",
        {"CallSid": call.call_sid, "AccountSid": account.account_sid},
    )
    assert response.status_code == 200
    return ET.fromstring(response.content)  # noqa: S314 (our own server's answer)


def test_a_call_cut_by_a_restart_is_connected_again_with_a_fresh_resume_credential(alice):
    from sessions.services import voice_session_resume
    from voice_platform.tenancy.scope import tenant_scope

    session = VoiceSessionFactory(tenant=alice.tenant, status=VoiceSession.Status.RECONNECTING)
    call = PhoneCallFactory(
        tenant=alice.tenant, session=session, status=PhoneCall.Status.CONNECTED,
        reason="server_restart",
    )  # fmt: skip
    twiml = _stream_ended(call)
    parameter = twiml.find("./Connect/Stream/Parameter")
    assert parameter is not None
    assert parameter.get("name") == "resume"
    with tenant_scope(alice.tenant.pk):  # the credential resumes exactly that session
        grant = voice_session_resume(
            raw_resume_token=str(parameter.get("value")), origin=None, channel_name="x"
        )
    assert grant.session.pk == session.pk
    # The same signed request again (a replay): no second credential.
    twiml = _stream_ended(call)
    assert twiml.find("./Connect") is None
    assert twiml.find("./Hangup") is not None


def test_a_cut_call_whose_session_is_over_hears_sorry_and_ends(alice):
    session = VoiceSessionFactory(tenant=alice.tenant, status=VoiceSession.Status.ENDED)
    call = PhoneCallFactory(
        tenant=alice.tenant, session=session, status=PhoneCall.Status.CONNECTED,
        reason="server_restart",
    )  # fmt: skip
    twiml = _stream_ended(call)
    assert twiml.find("./Connect") is None
    assert twiml.find("./Say") is not None
    row = PhoneCall.unscoped.get(pk=call.pk)
    assert (row.status, row.reason) == ("ended", "stream_failed")


def test_a_ringing_call_refused_by_a_stopping_process_is_answered_again(alice):
    call = PhoneCallFactory(tenant=alice.tenant, status=PhoneCall.Status.RINGING,
                            reason="server_restart")  # fmt: skip
    twiml = _stream_ended(call)
    parameter = twiml.find("./Connect/Stream/Parameter")
    assert parameter is not None
    assert parameter.get("name") == "token"
    token = ClientToken.unscoped.get(token_hash=hash_secret(str(parameter.get("value"))))
    assert token.metadata["call_sid"] == call.call_sid
    assert token.uses_left == 1


def test_a_transfer_the_carrier_api_failed_is_dialled_by_twiml(alice):
    call = PhoneCallFactory(
        tenant=alice.tenant, status=PhoneCall.Status.ENDED, reason="action_failed",
        action=PhoneCall.Action.TRANSFER, action_target="+14155550199",
    )  # fmt: skip
    twiml = _stream_ended(call)
    dial = twiml.find("./Dial")
    assert dial is not None
    assert dial.text == "+14155550199"
