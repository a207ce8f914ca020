"""The carrier's call webhook and its stream-ended action (docs/telephony.md): accepted
calls get TwiML connecting them to the media stream with a single-use credential bound to
the CallSid; refused ones a polite sentence and a hang-up, always with a PhoneCall row."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from twilio.request_validator import RequestValidator

from sessions.models import ClientToken, VoiceSession
from sessions.tokens import client_token_consume, client_token_find
from telephony.models import CarrierAccount, PhoneCall, PhoneNumber
from telephony.twiml import DEFAULT_REFUSAL, FAULT_SENTENCE, REFUSAL_SENTENCES
from tests.factories import (
    CALL_NONCE,
    CARRIER_AUTH_TOKEN,
    CarrierAccountFactory,
    PhoneCallFactory,
    PhoneNumberFactory,
    VoiceSessionFactory,
)
from voice_platform.tenancy.scope import tenant_scope
from voice_platform.tenancy.services import hash_secret

pytestmark = pytest.mark.django_db

CALLER = "+14155550199"


def voice_path(account: CarrierAccount) -> str:
    return reverse("phone-twilio-voice", kwargs={"account_id": account.public_id})


def stream_ended_path(account: CarrierAccount) -> str:
    return reverse("phone-twilio-stream-ended", kwargs={"account_id": account.public_id})


def call_params(account: CarrierAccount, to: str, call_sid: str = "CA" + "1" * 32) -> dict:
    return {
        "CallSid": call_sid,
        "AccountSid": account.account_sid,
        "From": CALLER,
        "To": to,
        "CallStatus": "ringing",
        "Direction": "inbound",
    }


def signed_post(
    path: str,
    params: dict[str, str],
    *,
    url: str | None = None,
    token: str = CARRIER_AUTH_TOKEN,
    signature: str | None = None,
    secure: bool = False,
    **extra: Any,
):
    """POST ``params`` as the carrier does, signed over ``url`` (by default the URL the
    test client requests) with ``token``."""
    scheme = "https" if secure else "http"
    url = url or f"{scheme}://testserver{path}"
    if signature is None:
        signature = RequestValidator(token).compute_signature(url, params)
    return Client().post(
        path, params, secure=secure, headers={"X-Twilio-Signature": signature}, **extra
    )


def twiml(response) -> ET.Element:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/xml")
    return ET.fromstring(response.content)  # noqa: S314 (our own TwiML)


def said_and_hung_up(root: ET.Element) -> str:
    """The one sentence said before the hang-up (and nothing else)."""
    assert [child.tag for child in root] == ["Say", "Hangup"], ET.tostring(root)
    return root[0].text or ""


@pytest.fixture
def line(alice):
    """One of Alice's numbers, on her carrier account, ringing her audio agent."""
    return PhoneNumberFactory(tenant=alice.tenant, greeting="Hello, Alice speaking.")


def calls() -> list[PhoneCall]:
    return list(PhoneCall.unscoped.order_by("id"))


# --- accepted ------------------------------------------------------------------------------


def test_an_accepted_call_connects_to_the_media_stream_with_a_single_use_token(line, settings):
    account = line.carrier_account
    response = signed_post(voice_path(account), call_params(account, line.number))
    root = twiml(response)
    assert [child.tag for child in root] == ["Connect"]  # the agent says the greeting
    connect = root[0]
    # The answer's nonce rides on the action URL (the carrier signs the whole URL).
    action, _, nonce = str(connect.get("action")).partition("?n=")
    assert action == f"http://testserver{stream_ended_path(account)}"
    call = PhoneCall.unscoped.get(call_sid=call_params(account, line.number)["CallSid"])
    assert len(nonce) >= 20
    assert call.answer_nonce_hash == hash_secret(nonce)
    (stream,) = connect
    assert stream.tag == "Stream"
    assert stream.get("url") == f"ws://testserver/ws/v1/phone/twilio/{account.public_id}"
    (parameter,) = stream
    assert parameter.tag == "Parameter"
    assert parameter.get("name") == "token"
    raw = parameter.get("value")
    assert raw.startswith("ct_")

    (call,) = calls()
    assert call.tenant_id == account.tenant_id
    assert call.status == PhoneCall.Status.RINGING
    assert call.phone_number_id == line.pk
    assert (call.from_number, call.to_number) == (CALLER, line.number)

    with tenant_scope(account.tenant_id):
        token = client_token_find(raw=raw)
        assert token is not None
        assert client_token_consume(token=token)
        assert not client_token_consume(token=token)  # single use
    token.refresh_from_db()
    assert token.tenant_id == account.tenant_id
    assert token.agent_id == line.agent_id
    assert token.end_user_id == CALLER
    assert (token.uses, token.uses_left) == (1, 0)
    assert token.metadata == {
        "channel": "phone",
        "call_sid": call.call_sid,
        "phone_call_id": call.pk,
        "from": CALLER,
        "to": line.number,
        "greeting": "Hello, Alice speaking.",
    }
    lifetime = settings.PHONE_TOKEN_SECONDS
    assert abs((token.expires_at - token.created_at).total_seconds() - lifetime) < 2
    assert abs((token.new_session_expires_at - token.created_at).total_seconds() - lifetime) < 2


def test_the_token_lifetime_follows_the_setting(line, settings):
    settings.PHONE_TOKEN_SECONDS = 17
    account = line.carrier_account
    signed_post(voice_path(account), call_params(account, line.number))
    token = ClientToken.unscoped.get()
    assert abs((token.expires_at - token.created_at).total_seconds() - 17) < 2


def test_the_carrier_reads_the_greeting_when_asked_to(line):
    PhoneNumber.unscoped.filter(pk=line.pk).update(greeting_by=PhoneNumber.GreetingBy.CARRIER)
    account = line.carrier_account
    root = twiml(signed_post(voice_path(account), call_params(account, line.number)))
    assert [child.tag for child in root] == ["Say", "Connect"]
    assert root[0].text == "Hello, Alice speaking."
    assert ClientToken.unscoped.get().metadata["greeting"] == ""  # said once, not twice


def test_the_stream_url_is_wss_when_the_carrier_came_over_https(line):
    account = line.carrier_account
    root = twiml(signed_post(voice_path(account), call_params(account, line.number), secure=True))
    stream = root.find("Connect/Stream")
    assert stream.get("url") == f"wss://testserver/ws/v1/phone/twilio/{account.public_id}"
    assert root.find("Connect").get("action").startswith("https://testserver/phone/")


def test_the_public_url_setting_names_the_answer_urls(line, settings):
    settings.PHONE_PUBLIC_URL = "https://phone.example.com"
    account = line.carrier_account
    path = voice_path(account)
    response = signed_post(
        path, call_params(account, line.number), url=f"https://phone.example.com{path}"
    )
    root = twiml(response)
    assert root.find("Connect/Stream").get("url") == (
        f"wss://phone.example.com/ws/v1/phone/twilio/{account.public_id}"
    )
    assert str(root.find("Connect").get("action")).startswith(
        f"https://phone.example.com{stream_ended_path(account)}?n="
    )


def test_a_duplicate_call_sid_is_refused_without_a_second_token(line):
    account = line.carrier_account
    params = call_params(account, line.number)
    twiml(signed_post(voice_path(account), params))
    again = twiml(signed_post(voice_path(account), params))
    assert said_and_hung_up(again) == REFUSAL_SENTENCES["duplicate_call"]
    assert ClientToken.unscoped.count() == 1
    (call,) = calls()  # the first row stays as it was
    assert call.status == PhoneCall.Status.RINGING
    assert call.reason == ""


# --- refusals ------------------------------------------------------------------------------


def _refuse_unknown_number(line: PhoneNumber, params: dict, settings: Any) -> None:
    params["To"] = "+14155559999"


def _refuse_number_disabled(line: PhoneNumber, params: dict, settings: Any) -> None:
    PhoneNumber.unscoped.filter(pk=line.pk).update(enabled=False)


def _refuse_agent_disabled(line: PhoneNumber, params: dict, settings: Any) -> None:
    line.agent.enabled = False
    line.agent.save()


def _refuse_tenant_suspended(line: PhoneNumber, params: dict, settings: Any) -> None:
    line.tenant.status = line.tenant.Status.SUSPENDED
    line.tenant.save()


def _refuse_tenant_session_limit(line: PhoneNumber, params: dict, settings: Any) -> None:
    line.tenant.max_concurrent_sessions = 1
    line.tenant.save()
    VoiceSessionFactory(tenant=line.tenant, status=VoiceSession.Status.ACTIVE)


def _refuse_platform_at_capacity(line: PhoneNumber, params: dict, settings: Any) -> None:
    settings.LIVE_MAX_SESSIONS = 1
    VoiceSessionFactory(status=VoiceSession.Status.ACTIVE)  # another tenant's


REFUSALS = {
    "unknown_number": _refuse_unknown_number,
    "number_disabled": _refuse_number_disabled,
    "agent_disabled": _refuse_agent_disabled,
    "tenant_suspended": _refuse_tenant_suspended,
    "tenant_session_limit": _refuse_tenant_session_limit,
    "platform_at_capacity": _refuse_platform_at_capacity,
}


@pytest.mark.parametrize("reason", list(REFUSALS))
def test_each_refusal_is_said_politely_and_recorded(line, settings, reason):
    account = line.carrier_account
    params = call_params(account, line.number)
    REFUSALS[reason](line, params, settings)
    root = twiml(signed_post(voice_path(account), params))
    sentence = said_and_hung_up(root)
    assert sentence == REFUSAL_SENTENCES[reason]
    (call,) = calls()
    assert (call.status, call.reason) == (PhoneCall.Status.REFUSED, reason)
    assert call.tenant_id == account.tenant_id
    assert call.ended_at is not None
    assert call.call_sid == params["CallSid"]
    assert not ClientToken.unscoped.exists()


def test_every_refusal_has_its_own_documented_sentence():
    with open("docs/telephony.md", encoding="utf-8") as doc:
        text = doc.read()
    for reason, sentence in REFUSAL_SENTENCES.items():
        assert f"`{reason}`" in text
        assert sentence in text, reason
    assert DEFAULT_REFUSAL in text
    assert FAULT_SENTENCE in text


def test_another_tenants_number_is_an_unknown_number_on_alices_account(line, charlie):
    charlies = PhoneNumberFactory(tenant=charlie.tenant)
    account = line.carrier_account  # Alice's, correctly signed
    root = twiml(signed_post(voice_path(account), call_params(account, charlies.number)))
    assert said_and_hung_up(root) == REFUSAL_SENTENCES["unknown_number"]
    (call,) = calls()
    assert call.tenant_id == line.tenant_id
    assert call.phone_number_id is None
    assert call.reason == "unknown_number"
    assert not ClientToken.unscoped.exists()


def test_a_number_of_another_account_of_the_same_tenant_is_unknown_here(line):
    other_account = CarrierAccountFactory(tenant=line.tenant)
    params = call_params(other_account, line.number)
    root = twiml(signed_post(voice_path(other_account), params))
    assert said_and_hung_up(root) == REFUSAL_SENTENCES["unknown_number"]


# --- bad requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"CallSid": None}, b"Missing CallSid"),
        ({"To": None}, b"Missing To"),
        ({"CallSid": "CA" + "x" * 80}, b"CallSid is longer"),
        ({"From": "+1415\x00555"}, b"From holds characters"),
    ],
)
def test_unusable_parameters_answer_400_in_plain_text(line, change, message):
    account = line.carrier_account
    params = call_params(account, line.number)
    for name, value in change.items():
        if value is None:
            del params[name]
        else:
            params[name] = value
    response = signed_post(voice_path(account), params)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert message in response.content
    assert not PhoneCall.unscoped.exists()


def test_an_unknown_account_answers_404(line):
    import uuid

    path = reverse("phone-twilio-voice", kwargs={"account_id": uuid.uuid4()})
    response = signed_post(path, call_params(line.carrier_account, line.number))
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/plain")


def test_a_disabled_account_answers_404(line):
    account = line.carrier_account
    CarrierAccount.unscoped.filter(pk=account.pk).update(enabled=False)
    response = signed_post(voice_path(account), call_params(account, line.number))
    assert response.status_code == 404
    assert not PhoneCall.unscoped.exists()


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_only_post_is_allowed(line, method):
    response = getattr(Client(), method)(voice_path(line.carrier_account))
    assert response.status_code == 405
    response = getattr(Client(), method)(stream_ended_path(line.carrier_account))
    assert response.status_code == 405


# --- stream-ended --------------------------------------------------------------------------


def stream_ended(account: CarrierAccount, call_sid: str, nonce: str = CALL_NONCE):
    """The carrier's request to the newest answer's action URL (PhoneCallFactory's rows
    hold CALL_NONCE's hash)."""
    params = {"CallSid": call_sid, "AccountSid": account.account_sid, "StreamSid": "MZ1"}
    return twiml(signed_post(f"{stream_ended_path(account)}?n={nonce}", params))


def test_stream_ended_of_a_refused_call_says_why(line):
    call = PhoneCallFactory(
        tenant=line.tenant, phone_number=line, status=PhoneCall.Status.REFUSED,
        reason="tenant_session_limit",
    )  # fmt: skip
    root = stream_ended(line.carrier_account, call.call_sid)
    assert said_and_hung_up(root) == REFUSAL_SENTENCES["tenant_session_limit"]


def test_stream_ended_of_a_call_refused_by_the_stream_uses_the_default_sentence(line):
    call = PhoneCallFactory(
        tenant=line.tenant, phone_number=line, status=PhoneCall.Status.REFUSED,
        reason="invalid_token",
    )  # fmt: skip
    root = stream_ended(line.carrier_account, call.call_sid)
    assert said_and_hung_up(root) == DEFAULT_REFUSAL


@pytest.mark.parametrize("reason", ["server_error", "upstream_unavailable", "upstream_lost"])
def test_stream_ended_by_a_fault_apologises(line, reason):
    call = PhoneCallFactory(
        tenant=line.tenant, phone_number=line, status=PhoneCall.Status.ENDED, reason=reason
    )
    assert said_and_hung_up(stream_ended(line.carrier_account, call.call_sid)) == FAULT_SENTENCE


@pytest.mark.parametrize("reason", ["client_closed", "max_duration", "end_call"])
def test_stream_ended_normally_just_hangs_up(line, reason):
    call = PhoneCallFactory(
        tenant=line.tenant, phone_number=line, status=PhoneCall.Status.ENDED, reason=reason
    )
    root = stream_ended(line.carrier_account, call.call_sid)
    assert [child.tag for child in root] == ["Hangup"]


def test_stream_ended_of_a_connected_call_from_an_older_answer_leaves_the_row(line):
    call = PhoneCallFactory(tenant=line.tenant, phone_number=line, status="connected")
    root = stream_ended(line.carrier_account, call.call_sid, nonce="an-older-answers-nonce")
    assert [child.tag for child in root] == ["Hangup"]
    call.refresh_from_db()
    assert (call.status, call.reason) == (PhoneCall.Status.CONNECTED, "")


def test_stream_ended_of_a_connected_call_without_a_live_session_apologises(line):
    # A connected call's stream ended without our recording its end: a cut. With no
    # session left to resume, the caller hears sorry and the call ends.
    call = PhoneCallFactory(tenant=line.tenant, phone_number=line, status="connected")
    assert said_and_hung_up(stream_ended(line.carrier_account, call.call_sid)) == FAULT_SENTENCE
    call.refresh_from_db()
    assert (call.status, call.reason) == (PhoneCall.Status.ENDED, "stream_failed")


def test_stream_ended_before_the_stream_started_records_it_and_apologises(line):
    call = PhoneCallFactory(tenant=line.tenant, phone_number=line, status="ringing")
    assert said_and_hung_up(stream_ended(line.carrier_account, call.call_sid)) == FAULT_SENTENCE
    call.refresh_from_db()
    assert (call.status, call.reason) == (PhoneCall.Status.ENDED, "stream_failed")


def test_stream_ended_of_an_unknown_call_hangs_up(line):
    root = stream_ended(line.carrier_account, "CA" + "9" * 32)
    assert [child.tag for child in root] == ["Hangup"]


def test_stream_ended_never_reads_another_tenants_call(line, charlie):
    theirs = PhoneCallFactory(
        tenant=charlie.tenant, status=PhoneCall.Status.REFUSED, reason="number_disabled"
    )
    root = stream_ended(line.carrier_account, theirs.call_sid)
    assert [child.tag for child in root] == ["Hangup"]  # as unknown: nothing of Charlie's


def test_stream_ended_without_call_sid_answers_400(line):
    account = line.carrier_account
    response = signed_post(stream_ended_path(account), {"AccountSid": account.account_sid})
    assert response.status_code == 400


def test_the_carrier_door_runs_the_view_in_the_accounts_tenant_scope(line):
    from django.http import HttpResponse
    from django.test import RequestFactory

    from telephony.selectors import carrier_account_tenant_id
    from voice_platform.tenancy.inbound import carrier_tenant_view
    from voice_platform.tenancy.scope import current_tenant_id

    seen: list[int | None] = []

    @carrier_tenant_view(carrier_account_tenant_id)
    def view(request, account_id):
        seen.append(current_tenant_id())
        return HttpResponse("ok")

    request = RequestFactory().post("/")
    assert view(request, account_id=line.carrier_account.public_id).status_code == 200
    assert seen == [line.tenant_id]
    assert current_tenant_id() is None  # and left it afterwards
    import uuid

    assert view(request, account_id=uuid.uuid4()).status_code == 404
    assert seen == [line.tenant_id]  # an unknown id never reaches the view
