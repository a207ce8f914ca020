from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sessions.models import ClientToken
from voice_platform.tenancy.services import hash_secret

pytestmark = pytest.mark.django_db


def issue(world, agent, **body):
    return world.client.post(
        f"/api/v1/agents/{agent.pk}/tokens/", {"user_id": "customer-42", **body}, format="json"
    )


def test_token_create_returns_contract_fields_and_stores_hash_only(alice, alice_agent):
    before = timezone.now()
    response = issue(alice, alice_agent, metadata={"plan": "gold"}, uses=2)
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {
        "id", "token", "expires_at", "new_session_expires_at", "uses", "websocket_url"
    }  # fmt: skip
    assert len(body["token"]) >= 43  # >= 32 bytes of entropy, URL-safe base64
    assert body["uses"] == 2
    assert body["websocket_url"] == f"ws://testserver/ws/v1/live?token={body['token']}"
    expires = parse_datetime(body["expires_at"])
    new_session = parse_datetime(body["new_session_expires_at"])
    assert timedelta(seconds=1795) < expires - before < timedelta(seconds=1805)
    assert timedelta(seconds=55) < new_session - before < timedelta(seconds=65)
    stored = ClientToken.unscoped.get(pk=body["id"])
    assert stored.token_hash == hash_secret(body["token"])
    assert body["token"] not in (stored.prefix, stored.token_hash)
    assert stored.metadata == {"plan": "gold"}
    assert stored.end_user_id == "customer-42"
    assert stored.tenant_id == alice.tenant.pk


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": ""}, "user_id"),
        ({"expire_seconds": 3601}, "expire_seconds"),
        ({"expire_seconds": 0}, "expire_seconds"),
        ({"uses": 11}, "uses"),
        ({"uses": 0}, "uses"),
        ({"metadata": {"x": "y" * 5000}}, "metadata"),
        ({"metadata": "not an object"}, "metadata"),
        ({"expire_seconds": 30, "new_session_expire_seconds": 60}, "new_session_expire_seconds"),
    ],
)
def test_token_create_rejects_invalid_fields(alice, alice_agent, body, field):
    response = alice.client.post(
        f"/api/v1/agents/{alice_agent.pk}/tokens/", {"user_id": "u", **body}, format="json"
    )
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not ClientToken.unscoped.exists()


def test_token_create_for_other_tenants_agent_is_404(alice, charlie_agent):
    assert issue(alice, charlie_agent).status_code == 404
    assert not ClientToken.unscoped.exists()


def test_token_create_needs_api_key(alice_agent):
    from rest_framework.test import APIClient

    response = APIClient().post(f"/api/v1/agents/{alice_agent.pk}/tokens/", {"user_id": "u"})
    assert response.status_code == 401


def test_token_list_shows_only_own_live_tokens(alice, charlie, alice_agent, charlie_agent):
    live = issue(alice, alice_agent).json()["id"]
    revoked = issue(alice, alice_agent).json()["id"]
    used_up = issue(alice, alice_agent).json()["id"]
    issue(charlie, charlie_agent)
    ClientToken.unscoped.filter(pk=revoked).update(revoked_at=timezone.now())
    ClientToken.unscoped.filter(pk=used_up).update(uses_left=0)
    body = alice.client.get("/api/v1/tokens/").json()
    assert [t["id"] for t in body["results"]] == [live]
    assert "token" not in body["results"][0]
    assert "token_hash" not in body["results"][0]


def test_token_revoke_own_and_other_tenant_is_404(alice, charlie, alice_agent, charlie_agent):
    mine = issue(alice, alice_agent).json()["id"]
    theirs = issue(charlie, charlie_agent).json()["id"]
    assert alice.client.delete(f"/api/v1/tokens/{theirs}/").status_code == 404
    assert ClientToken.unscoped.get(pk=theirs).revoked_at is None
    assert alice.client.delete(f"/api/v1/tokens/{mine}/").status_code == 204
    assert ClientToken.unscoped.get(pk=mine).revoked_at is not None
