"""The carrier's signature (X-Twilio-Signature, checked with twilio's RequestValidator):
valid, missing, wrong, replayed over another body, another account's, and the URL behind a
proxy (PHONE_PUBLIC_URL)."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from twilio.request_validator import RequestValidator

from telephony.models import CarrierAccount, PhoneCall
from telephony.signatures import carrier_request_url
from tests.factories import CARRIER_AUTH_TOKEN, PhoneNumberFactory
from tests.telephony.test_inbound import (
    call_params,
    signed_post,
    stream_ended_path,
    voice_path,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def line(alice):
    return PhoneNumberFactory(tenant=alice.tenant)


def assert_forbidden(response, calls: int = 0) -> None:
    assert response.status_code == 403, response.content
    assert response["Content-Type"].startswith("text/plain")
    assert PhoneCall.unscoped.count() == calls  # nothing recorded for a forged request


def test_a_validly_signed_call_is_answered(line):
    account = line.carrier_account
    response = signed_post(voice_path(account), call_params(account, line.number))
    assert response.status_code == 200
    assert PhoneCall.unscoped.count() == 1


def test_a_missing_signature_is_refused(line):
    account = line.carrier_account
    assert_forbidden(signed_post(voice_path(account), call_params(account, line.number),
                                 signature=""))  # fmt: skip


def test_a_wrong_signature_is_refused(line):
    account = line.carrier_account
    assert_forbidden(
        signed_post(voice_path(account), call_params(account, line.number), signature="bm9wZQ==")
    )


def test_a_signature_replayed_over_another_body_is_refused(line):
    account = line.carrier_account
    params = call_params(account, line.number)
    path = voice_path(account)
    signature = RequestValidator(CARRIER_AUTH_TOKEN).compute_signature(
        f"http://testserver{path}", params
    )
    changed = {**params, "From": "+14155550666"}  # same signature, one parameter changed
    assert_forbidden(signed_post(path, changed, signature=signature))
    assert signed_post(path, params, signature=signature).status_code == 200  # the original


def test_a_signature_made_with_another_token_is_refused(line):
    account = line.carrier_account
    params = call_params(account, line.number)
    assert_forbidden(signed_post(voice_path(account), params, token="f" * 32))


def test_a_signature_over_another_accounts_url_is_refused(line, charlie):
    account = line.carrier_account
    theirs = PhoneNumberFactory(tenant=charlie.tenant).carrier_account
    params = call_params(account, line.number)
    # Signed for Charlie's URL (same auth token in the fixtures), posted to Alice's.
    url = f"http://testserver{voice_path(theirs)}"
    assert_forbidden(signed_post(voice_path(account), params, url=url))


def test_another_account_sid_in_a_signed_request_is_refused(line):
    account = line.carrier_account
    params = {**call_params(account, line.number), "AccountSid": "AC" + "0" * 32}
    assert_forbidden(signed_post(voice_path(account), params))


def test_an_undecryptable_auth_token_refuses_every_request(line):
    account = line.carrier_account
    CarrierAccount.unscoped.filter(pk=account.pk).update(auth_token_encrypted="gAAAA-garbage")
    assert_forbidden(signed_post(voice_path(account), call_params(account, line.number)))


def test_stream_ended_is_signed_the_same_way(line):
    account = line.carrier_account
    params = {"CallSid": "CA" + "2" * 32, "AccountSid": account.account_sid}
    assert signed_post(stream_ended_path(account), params).status_code == 200
    response = signed_post(stream_ended_path(account), params, signature="bm9wZQ==")
    assert response.status_code == 403


def test_behind_a_proxy_the_public_url_is_what_is_checked(line, settings):
    # Twilio signs https://phone.example.com/...; the proxy forwards it to us over plain
    # http to another host name, so only PHONE_PUBLIC_URL can rebuild the signed URL.
    account = line.carrier_account
    path = voice_path(account)
    params = call_params(account, line.number)
    public = f"https://phone.example.com{path}"
    assert_forbidden(signed_post(path, params, url=public))  # without the setting
    settings.PHONE_PUBLIC_URL = "https://phone.example.com"
    assert signed_post(path, params, url=public).status_code == 200
    # ...and a signature over the internal URL no longer passes.
    params = call_params(account, line.number, call_sid="CA" + "3" * 32)
    assert_forbidden(signed_post(path, params), calls=1)


def test_the_request_url_keeps_the_query_string(settings):
    request = RequestFactory().post("/phone/twilio/x/voice?a=1&b=2")
    assert carrier_request_url(request=request) == "http://testserver/phone/twilio/x/voice?a=1&b=2"
    settings.PHONE_PUBLIC_URL = "https://phone.example.com"
    assert carrier_request_url(request=request) == (
        "https://phone.example.com/phone/twilio/x/voice?a=1&b=2"
    )
