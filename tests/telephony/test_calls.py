"""Every call gets a final state, even when no stream or carrier request records its end."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions.models import VoiceSession
from telephony.calls import phone_call_sweep
from telephony.models import PhoneCall
from tests.factories import PhoneCallFactory, VoiceSessionFactory

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
        f"/phone/twilio/{account.public_id}/stream-ended",
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
    # Once the session is over there is nothing to connect: sorry, and a hang-up.
    VoiceSession.unscoped.filter(pk=session.pk).update(status=VoiceSession.Status.ENDED)
    twiml = _stream_ended(call)
    assert twiml.find("./Connect") is None
    assert twiml.find("./Hangup") is not None
    assert PhoneCall.unscoped.get(pk=call.pk).reason == "stream_failed"
