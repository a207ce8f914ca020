"""REST under /api/v1/phone/: carrier accounts (auth token write-only, stored encrypted;
the URLs to paste into Twilio), numbers (the tenant's own agent and account only), calls
(read-only). Charlie never sees Alice's objects: 404."""

from __future__ import annotations

import pytest

from agents.models import Agent
from telephony.models import CarrierAccount, PhoneCall, PhoneNumber
from tests.factories import (
    AgentFactory,
    CarrierAccountFactory,
    PhoneCallFactory,
    PhoneNumberFactory,
    VoiceSessionFactory,
)
from voice_platform.crypto import decrypt_str

pytestmark = pytest.mark.django_db

ACCOUNTS = "/api/v1/phone/carrier-accounts/"
NUMBERS = "/api/v1/phone/numbers/"
CALLS = "/api/v1/phone/calls/"
SID = "AC" + "ab" * 16
TOKEN = "c0ffee" * 5 + "aa"


def results(response) -> list[dict]:
    assert response.status_code == 200, response.content
    return response.json()["results"]


# --- carrier accounts ---------------------------------------------------------------------


def test_creating_an_account_stores_the_token_encrypted_and_returns_the_urls(alice):
    response = alice.client.post(
        ACCOUNTS, {"name": "Twilio", "account_sid": SID, "auth_token": TOKEN}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert "auth_token" not in body
    assert TOKEN not in response.content.decode()
    account = CarrierAccount.unscoped.get()
    assert account.tenant_id == alice.tenant.pk
    assert account.auth_token_encrypted != TOKEN
    assert decrypt_str(account.auth_token_encrypted) == TOKEN
    assert body["public_id"] == str(account.public_id)
    assert body["voice_url"] == f"http://testserver/phone/twilio/{account.public_id}/voice"
    assert body["stream_ended_url"] == (
        f"http://testserver/phone/twilio/{account.public_id}/stream-ended"
    )
    detail = alice.client.get(f"{ACCOUNTS}{account.pk}/").json()
    assert "auth_token" not in detail
    assert detail["voice_url"] == body["voice_url"]


def test_the_urls_use_the_public_url_when_set(alice, settings):
    settings.PHONE_PUBLIC_URL = "https://phone.example.com"
    account = CarrierAccountFactory(tenant=alice.tenant)
    (row,) = results(alice.client.get(ACCOUNTS))
    assert row["voice_url"] == f"https://phone.example.com/phone/twilio/{account.public_id}/voice"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "account_sid": SID}, "auth_token"),
        ({"name": "x", "account_sid": "AC123", "auth_token": TOKEN}, "account_sid"),
        ({"name": "x", "account_sid": SID, "auth_token": "short"}, "auth_token"),
        ({"name": "x", "account_sid": SID, "auth_token": TOKEN, "public_id": "x"}, "public_id"),
    ],
)
def test_bad_account_input_answers_400_on_its_field(alice, body, field):
    response = alice.client.post(ACCOUNTS, body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not CarrierAccount.unscoped.exists()


def test_updating_without_a_token_keeps_it_and_a_new_one_replaces_it(alice):
    account = CarrierAccountFactory(tenant=alice.tenant)
    before = account.auth_token_encrypted
    response = alice.client.patch(f"{ACCOUNTS}{account.pk}/", {"name": "renamed"}, format="json")
    assert response.status_code == 200, response.content
    account.refresh_from_db()
    assert (account.name, account.auth_token_encrypted) == ("renamed", before)
    response = alice.client.patch(f"{ACCOUNTS}{account.pk}/", {"auth_token": TOKEN}, format="json")
    assert response.status_code == 200
    account.refresh_from_db()
    assert decrypt_str(account.auth_token_encrypted) == TOKEN


def test_an_account_with_numbers_cannot_be_deleted(alice):
    number = PhoneNumberFactory(tenant=alice.tenant)
    url = f"{ACCOUNTS}{number.carrier_account_id}/"
    assert alice.client.delete(url).status_code == 400
    PhoneNumber.unscoped.all().delete()
    assert alice.client.delete(url).status_code == 204
    assert not CarrierAccount.unscoped.exists()


def test_charlie_cannot_see_or_touch_alices_accounts(alice, charlie):
    account = CarrierAccountFactory(tenant=alice.tenant)
    url = f"{ACCOUNTS}{account.pk}/"
    assert results(charlie.client.get(ACCOUNTS)) == []
    assert charlie.client.get(url).status_code == 404
    assert charlie.client.patch(url, {"name": "mine"}, format="json").status_code == 404
    assert charlie.client.delete(url).status_code == 404
    account.refresh_from_db()
    assert account.name != "mine"


# --- numbers --------------------------------------------------------------------------------


def test_creating_a_number_for_an_audio_agent(alice):
    agent = AgentFactory(tenant=alice.tenant)
    account = CarrierAccountFactory(tenant=alice.tenant)
    response = alice.client.post(
        NUMBERS,
        {"number": "+14155550123", "carrier_account": account.pk, "agent": agent.pk,
         "greeting": "Hi!", "greeting_by": "carrier"},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.content
    number = PhoneNumber.unscoped.get()
    assert (number.tenant_id, number.agent_id, number.carrier_account_id) == (
        alice.tenant.pk, agent.pk, account.pk,
    )  # fmt: skip
    assert response.json()["agent"] == agent.pk
    assert number.greeting_by == PhoneNumber.GreetingBy.CARRIER


def test_a_text_agent_is_refused(alice):
    agent = AgentFactory(tenant=alice.tenant, response_modality="TEXT")
    account = CarrierAccountFactory(tenant=alice.tenant)
    response = alice.client.post(
        NUMBERS, {"number": "+14155550123", "carrier_account": account.pk, "agent": agent.pk},
        format="json",
    )  # fmt: skip
    assert response.status_code == 400
    assert "agent" in response.json()


def test_another_tenants_agent_or_account_reads_like_a_missing_one(alice, charlie):
    mine = CarrierAccountFactory(tenant=alice.tenant)
    my_agent = AgentFactory(tenant=alice.tenant)
    theirs = PhoneNumberFactory(tenant=charlie.tenant)  # Charlie's agent and account
    for body, field in (
        ({"agent": theirs.agent_id, "carrier_account": mine.pk}, "agent"),
        ({"agent": my_agent.pk, "carrier_account": theirs.carrier_account_id}, "carrier_account"),
    ):
        foreign = alice.client.post(NUMBERS, {"number": "+14155550123", **body}, format="json")
        missing = alice.client.post(
            NUMBERS, {"number": "+14155550123", **body, field: 999999}, format="json"
        )
        assert foreign.status_code == missing.status_code == 400
        assert foreign.json() == missing.json()
    assert PhoneNumber.unscoped.count() == 1


def test_a_number_registered_by_another_tenant_is_refused(alice, charlie):
    theirs = PhoneNumberFactory(tenant=charlie.tenant)
    agent = AgentFactory(tenant=alice.tenant)
    account = CarrierAccountFactory(tenant=alice.tenant)
    response = alice.client.post(
        NUMBERS, {"number": theirs.number, "carrier_account": account.pk, "agent": agent.pk},
        format="json",
    )  # fmt: skip
    assert response.status_code == 400
    assert "number" in response.json()


@pytest.mark.parametrize(
    "number",
    [
        "14155550123",
        "+0123456789",
        "+1415555012345678",
        "+1\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0662\u0663",
    ],
)
def test_a_number_not_in_e164_is_refused(alice, number):
    agent = AgentFactory(tenant=alice.tenant)
    account = CarrierAccountFactory(tenant=alice.tenant)
    response = alice.client.post(
        NUMBERS, {"number": number, "carrier_account": account.pk, "agent": agent.pk},
        format="json",
    )  # fmt: skip
    assert response.status_code == 400
    assert "number" in response.json()


def test_updating_and_deleting_a_number(alice):
    number = PhoneNumberFactory(tenant=alice.tenant)
    other_agent = AgentFactory(tenant=alice.tenant)
    url = f"{NUMBERS}{number.pk}/"
    response = alice.client.patch(url, {"agent": other_agent.pk, "enabled": False}, format="json")
    assert response.status_code == 200, response.content
    number.refresh_from_db()
    assert (number.agent_id, number.enabled) == (other_agent.pk, False)
    call = PhoneCallFactory(tenant=alice.tenant, phone_number=number)
    assert alice.client.delete(url).status_code == 204
    call.refresh_from_db()
    assert call.phone_number_id is None  # the call stays


def test_charlie_cannot_see_or_touch_alices_numbers(alice, charlie, charlie_agent):
    number = PhoneNumberFactory(tenant=alice.tenant)
    url = f"{NUMBERS}{number.pk}/"
    assert results(charlie.client.get(NUMBERS)) == []
    assert charlie.client.get(url).status_code == 404
    response = charlie.client.patch(url, {"agent": charlie_agent.pk}, format="json")
    assert response.status_code == 404
    assert charlie.client.delete(url).status_code == 404
    assert PhoneNumber.unscoped.filter(pk=number.pk, agent_id=number.agent_id).exists()


# --- calls ----------------------------------------------------------------------------------


def test_calls_are_listed_newest_first_and_read_only(alice):
    session = VoiceSessionFactory(tenant=alice.tenant)
    first = PhoneCallFactory(tenant=alice.tenant)
    second = PhoneCallFactory(
        tenant=alice.tenant, session=session, status="refused", reason="number_disabled"
    )
    rows = results(alice.client.get(CALLS))
    assert [row["id"] for row in rows] == [second.pk, first.pk]
    detail = alice.client.get(f"{CALLS}{second.pk}/").json()
    assert detail["call_sid"] == second.call_sid
    assert detail["session"] == str(session.pk)
    assert (detail["status"], detail["reason"]) == ("refused", "number_disabled")
    assert alice.client.delete(f"{CALLS}{second.pk}/").status_code == 405
    assert alice.client.post(CALLS, {}, format="json").status_code == 405
    assert PhoneCall.unscoped.count() == 2


def test_charlie_cannot_see_alices_calls(alice, charlie):
    call = PhoneCallFactory(tenant=alice.tenant)
    assert results(charlie.client.get(CALLS)) == []
    assert charlie.client.get(f"{CALLS}{call.pk}/").status_code == 404


def test_the_schema_documents_the_phone_endpoints():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    for path in (ACCOUNTS, NUMBERS, CALLS):
        assert path in schema["paths"]
    account = schema["components"]["schemas"]["CarrierAccount"]["properties"]
    assert "auth_token" not in account  # never in an answer
    request = schema["components"]["schemas"]["CarrierAccountCreateRequest"]
    assert "auth_token" in request["required"]


def test_an_agent_that_a_number_rings_cannot_be_deleted_and_says_why(alice):
    number = PhoneNumberFactory(tenant=alice.tenant)
    response = alice.client.delete(f"/api/v1/agents/{number.agent_id}/")
    assert response.status_code == 400
    assert "Phone numbers ring this agent" in str(response.json())
    assert Agent.unscoped.filter(pk=number.agent_id).exists()


def test_a_tenant_with_numbers_and_calls_can_be_deleted(alice):
    call = PhoneCallFactory(tenant=alice.tenant)
    alice.tenant.delete()
    assert not PhoneCall.unscoped.filter(pk=call.pk).exists()
    assert not PhoneNumber.unscoped.filter(pk=call.phone_number_id).exists()


def test_a_number_needs_an_agent_with_automatic_turn_detection(alice):
    agent = AgentFactory(tenant=alice.tenant, vad_enabled=False)
    account = CarrierAccountFactory(tenant=alice.tenant)
    response = alice.client.post(
        "/api/v1/phone/numbers/",
        {"number": "+14155550177", "agent": agent.pk, "carrier_account": account.pk},
        format="json",
    )
    assert response.status_code == 400
    assert "voice activity detection" in str(response.json())
