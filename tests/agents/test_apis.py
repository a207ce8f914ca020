from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings

from agents.models import Agent
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


def agent_payload(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Support",
        "slug": "support",
        "model": settings.LIVE_MODELS[0],
        "response_modality": "AUDIO",
        "voice": "Kore",
        "system_instruction": "Be brief.",
        "input_transcription": True,
    }
    data.update(overrides)
    return data


def test_agent_create_sets_tenant_from_key(alice, charlie):
    response = alice.client.post("/api/v1/agents/", agent_payload(), format="json")
    assert response.status_code == 201, response.content
    agent = Agent.unscoped.get(pk=response.json()["id"])
    assert agent.tenant_id == alice.tenant.pk
    assert agent.voice == "Kore"
    assert agent.input_transcription is True


def test_agent_create_ignores_tenant_in_body(alice, charlie):
    response = alice.client.post(
        "/api/v1/agents/", agent_payload(tenant=charlie.tenant.pk), format="json"
    )
    assert response.status_code == 201
    assert Agent.unscoped.get(pk=response.json()["id"]).tenant_id == alice.tenant.pk


def test_agent_list_shows_only_own_agents(alice, alice_agent, charlie_agent):
    response = alice.client.get("/api/v1/agents/")
    assert response.status_code == 200
    body = response.json()
    assert [a["id"] for a in body["results"]] == [alice_agent.pk]
    assert body["count"] == 1


def test_agent_list_paginates(alice):
    for i in range(3):
        AgentFactory(tenant=alice.tenant, slug=f"a{i}")
    body = alice.client.get("/api/v1/agents/?page_size=2").json()
    assert body["count"] == 3
    assert len(body["results"]) == 2
    assert body["next"] is not None


def test_agent_retrieve_other_tenant_is_404(alice, charlie_agent):
    assert alice.client.get(f"/api/v1/agents/{charlie_agent.pk}/").status_code == 404


def test_agent_retrieve_missing_is_404_like_other_tenant(alice):
    assert alice.client.get("/api/v1/agents/999999/").status_code == 404


def test_agent_update_other_tenant_is_404_and_unchanged(alice, charlie_agent):
    response = alice.client.patch(
        f"/api/v1/agents/{charlie_agent.pk}/", {"name": "hijacked"}, format="json"
    )
    assert response.status_code == 404
    charlie_agent.refresh_from_db()
    assert charlie_agent.name == "Charlie agent"


def test_agent_delete_other_tenant_is_404_and_kept(alice, charlie_agent):
    assert alice.client.delete(f"/api/v1/agents/{charlie_agent.pk}/").status_code == 404
    assert Agent.unscoped.filter(pk=charlie_agent.pk).exists()


def test_agent_update_and_delete_own(alice, alice_agent):
    response = alice.client.patch(
        f"/api/v1/agents/{alice_agent.pk}/", {"temperature": 0.5}, format="json"
    )
    assert response.status_code == 200, response.content
    alice_agent.refresh_from_db()
    assert alice_agent.temperature == 0.5
    response = alice.client.put(
        f"/api/v1/agents/{alice_agent.pk}/", agent_payload(name="Renamed"), format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Renamed"
    assert alice.client.delete(f"/api/v1/agents/{alice_agent.pk}/").status_code == 204
    assert not Agent.unscoped.filter(pk=alice_agent.pk).exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"model": "gemini-unknown"}, "model"),
        ({"response_modality": "VIDEO"}, "response_modality"),
        ({"voice": "Nobody"}, "voice"),
        ({"max_session_seconds": -5}, "max_session_seconds"),
        ({"resume_window_seconds": -1}, "resume_window_seconds"),
        ({"temperature": 3.5}, "temperature"),
        ({"allowed_origins": ["not a url"]}, "allowed_origins"),
        ({"allowed_origins": ["https://ok.example.com/path"]}, "allowed_origins"),
        ({"allowed_origins": "https://x.example.com"}, "allowed_origins"),
        (
            {"compression_trigger_tokens": 1000, "compression_target_tokens": 2000},
            "compression_target_tokens",
        ),
        ({"compression_target_tokens": 2000}, "compression_target_tokens"),
        ({"name": ""}, "name"),
    ],
)
def test_agent_create_rejects_invalid_settings_with_field_errors(alice, overrides, field):
    response = alice.client.post("/api/v1/agents/", agent_payload(**overrides), format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Agent.unscoped.exists()


def test_agent_create_requires_explicit_modality(alice):
    payload = agent_payload()
    del payload["response_modality"]
    response = alice.client.post("/api/v1/agents/", payload, format="json")
    assert response.status_code == 400
    assert "response_modality" in response.json()


def test_agent_slug_unique_per_tenant_only(alice, charlie, charlie_agent):
    first = alice.client.post(
        "/api/v1/agents/", agent_payload(slug=charlie_agent.slug), format="json"
    )
    assert first.status_code == 201  # same slug as Charlie's: fine, tenants are separate
    second = alice.client.post(
        "/api/v1/agents/", agent_payload(slug=charlie_agent.slug), format="json"
    )
    assert second.status_code == 400
    assert "non_field_errors" in second.json() or "slug" in second.json()


def test_agent_invalid_update_keeps_stored_values(alice, alice_agent):
    response = alice.client.patch(
        f"/api/v1/agents/{alice_agent.pk}/", {"model": "nope", "name": "x"}, format="json"
    )
    assert response.status_code == 400
    alice_agent.refresh_from_db()
    assert alice_agent.name == "Alice agent"


def test_agent_api_rejects_malformed_json(alice):
    response = alice.client.post("/api/v1/agents/", data=b"{nope", content_type="application/json")
    assert response.status_code == 400
