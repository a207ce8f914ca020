"""Admin: carrier accounts (the auth token entered, stored encrypted, never shown), numbers
(only the tenant's audio agents), calls read-only with a link to their session; another
tenant's rows answer 404."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from telephony.models import CarrierAccount, PhoneNumber
from tests.factories import (
    CARRIER_AUTH_TOKEN,
    AgentFactory,
    CarrierAccountFactory,
    PhoneCallFactory,
    PhoneNumberFactory,
    VoiceSessionFactory,
)
from tests.helpers import logged_in
from voice_platform.crypto import decrypt_str

pytestmark = pytest.mark.django_db

ACCOUNT_ADD = reverse("admin:telephony_carrieraccount_add")
NUMBER_ADD = reverse("admin:telephony_phonenumber_add")
SID = "AC" + "cd" * 16
TOKEN = "beef" * 8


def change_url(obj) -> str:
    return reverse(f"admin:telephony_{obj._meta.model_name}_change", args=[obj.pk])


def test_adding_an_account_encrypts_the_token_and_never_shows_it(alice, alice_staff):
    client = logged_in(alice_staff)
    response = client.post(
        ACCOUNT_ADD, {"name": "Twilio", "provider": "twilio", "account_sid": SID,
                      "auth_token": TOKEN, "enabled": "on"},
    )  # fmt: skip
    assert response.status_code == 302, response.content[:3000]
    account = CarrierAccount.unscoped.get()
    assert account.tenant_id == alice.tenant.pk
    assert decrypt_str(account.auth_token_encrypted) == TOKEN
    page = client.get(change_url(account)).content.decode()
    assert TOKEN not in page
    assert account.auth_token_encrypted not in page
    assert f"/phone/twilio/{account.public_id}/voice" in page  # the URL to paste


def test_an_account_needs_a_token_when_added(alice, alice_staff):
    response = logged_in(alice_staff).post(
        ACCOUNT_ADD, {"name": "Twilio", "provider": "twilio", "account_sid": SID, "enabled": "on"}
    )
    assert response.status_code == 200
    assert "auth token is required" in response.content.decode()
    assert not CarrierAccount.unscoped.exists()


def test_a_blank_token_keeps_the_stored_one(alice, alice_staff):
    account = CarrierAccountFactory(tenant=alice.tenant)
    response = logged_in(alice_staff).post(
        change_url(account), {"name": "renamed", "provider": "twilio",
                              "account_sid": account.account_sid, "auth_token": "",
                              "enabled": "on"},
    )  # fmt: skip
    assert response.status_code == 302, response.content[:3000]
    account.refresh_from_db()
    assert account.name == "renamed"
    assert decrypt_str(account.auth_token_encrypted) == CARRIER_AUTH_TOKEN


def test_a_bad_account_sid_is_refused_by_the_form(alice, alice_staff):
    response = logged_in(alice_staff).post(
        ACCOUNT_ADD, {"name": "T", "provider": "twilio", "account_sid": "nope",
                      "auth_token": TOKEN, "enabled": "on"},
    )  # fmt: skip
    assert response.status_code == 200
    assert "AC followed by 32" in response.content.decode()


def test_number_agent_choices_are_the_tenants_audio_agents(alice, alice_staff, charlie_agent):
    audio = AgentFactory(tenant=alice.tenant, name="Alice audio")
    text = AgentFactory(tenant=alice.tenant, name="Alice text", response_modality="TEXT")
    page = logged_in(alice_staff).get(NUMBER_ADD).content.decode()
    # The agent field's own options (other selects' ids may be the same numbers).
    choices = re.search(r'<select name="agent".*?</select>', page, re.DOTALL)
    assert choices is not None
    options = set(re.findall(r'<option value="(\d+)"', choices.group(0)))
    assert str(audio.pk) in options
    assert str(text.pk) not in options
    assert str(charlie_agent.pk) not in options


def test_adding_a_number_through_the_admin(alice, alice_staff):
    agent = AgentFactory(tenant=alice.tenant)
    account = CarrierAccountFactory(tenant=alice.tenant)
    response = logged_in(alice_staff).post(
        NUMBER_ADD, {"number": "+14155550123", "carrier_account": account.pk, "agent": agent.pk,
                     "greeting": "", "greeting_by": "agent", "enabled": "on"},
    )  # fmt: skip
    assert response.status_code == 302, response.content[:3000]
    number = PhoneNumber.unscoped.get()
    assert (number.tenant_id, number.agent_id) == (alice.tenant.pk, agent.pk)


def test_a_superuser_cannot_attach_another_tenants_agent_or_a_text_agent(
    alice, charlie_agent, superuser
):
    account = CarrierAccountFactory(tenant=alice.tenant)
    text = AgentFactory(tenant=alice.tenant, response_modality="TEXT")
    client = logged_in(superuser)
    for agent, message in ((charlie_agent, "Not an agent of this tenant"),
                           (text, "Select a valid choice")):  # not even offered  # fmt: skip
        response = client.post(
            NUMBER_ADD, {"tenant": alice.tenant.pk, "number": "+14155550123",
                         "carrier_account": account.pk, "agent": agent.pk, "greeting": "",
                         "greeting_by": "agent", "enabled": "on"},
        )  # fmt: skip
        assert response.status_code == 200
        assert message in response.content.decode()
    assert not PhoneNumber.unscoped.exists()


def test_a_number_of_another_tenant_is_refused_by_the_form(alice, alice_staff, charlie):
    theirs = PhoneNumberFactory(tenant=charlie.tenant)
    agent = AgentFactory(tenant=alice.tenant)
    account = CarrierAccountFactory(tenant=alice.tenant)
    response = logged_in(alice_staff).post(
        NUMBER_ADD, {"number": theirs.number, "carrier_account": account.pk, "agent": agent.pk,
                     "greeting": "", "greeting_by": "agent", "enabled": "on"},
    )  # fmt: skip
    assert response.status_code == 200
    assert "already registered" in response.content.decode()


def test_calls_are_read_only_and_link_their_session(alice, alice_staff):
    session = VoiceSessionFactory(tenant=alice.tenant)
    call = PhoneCallFactory(tenant=alice.tenant, session=session)
    client = logged_in(alice_staff)
    page = client.get(change_url(call))
    assert page.status_code == 200
    html = page.content.decode()
    assert reverse("admin:voice_sessions_voicesession_change", args=[session.pk]) in html
    assert 'name="_save"' not in html
    assert client.get(reverse("admin:telephony_phonecall_add")).status_code == 403
    delete = reverse("admin:telephony_phonecall_delete", args=[call.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403


def test_another_tenants_rows_answer_404(alice, alice_staff, charlie):
    number = PhoneNumberFactory(tenant=charlie.tenant)
    call = PhoneCallFactory(tenant=charlie.tenant, phone_number=number)
    client = logged_in(alice_staff)
    for obj in (number.carrier_account, number, call):
        assert client.get(change_url(obj)).status_code == 404, obj
    for name, text in (("carrieraccount", number.carrier_account.account_sid),
                       ("phonenumber", number.number), ("phonecall", call.call_sid)):  # fmt: skip
        listing = client.get(reverse(f"admin:telephony_{name}_changelist"))
        assert listing.status_code == 200
        assert text not in listing.content.decode()


def test_a_viewer_cannot_add_accounts(alice, alice_viewer):
    assert logged_in(alice_viewer).get(ACCOUNT_ADD).status_code == 403
