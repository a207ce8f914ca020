from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from agents.models import Agent
from tests.helpers import logged_in

pytestmark = pytest.mark.django_db


def agent_form(tenant_id: int | str = "", **overrides) -> dict:
    data = {
        "tenant": tenant_id,
        "name": "New agent",
        "slug": "new-agent",
        "enabled": "on",
        "model": settings.LIVE_MODELS[0],
        "response_modality": "AUDIO",
        "voice": "",
        "system_instruction": "Hello there",
        "context_limit_tokens": "128000",
        "session_resumption": "on",
        "vad_enabled": "on",
        "max_session_seconds": "900",
        "resume_window_seconds": "600",
        "allowed_origins": "[]",
    }
    data.update(overrides)
    return data


def test_admin_agent_list_shows_only_own_tenant(alice_staff, alice_agent, charlie_agent):
    response = logged_in(alice_staff).get("/admin/agents/agent/")
    assert response.status_code == 200
    assert "Alice agent" in response.text
    assert "Charlie agent" not in response.text


def test_admin_agent_change_other_tenant_is_not_found(alice_staff, charlie_agent):
    client = logged_in(alice_staff)
    response = client.get(f"/admin/agents/agent/{charlie_agent.pk}/change/")
    # Django's admin redirects a missing object to the index with a message: no data leaks.
    assert response.status_code == 302
    post = client.post(
        f"/admin/agents/agent/{charlie_agent.pk}/change/", agent_form(name="hijacked")
    )
    assert post.status_code == 302
    charlie_agent.refresh_from_db()
    assert charlie_agent.name == "Charlie agent"


def test_admin_agent_add_sets_own_tenant_even_if_forged(alice, charlie, alice_staff):
    response = logged_in(alice_staff).post(
        "/admin/agents/agent/add/", agent_form(tenant_id=charlie.tenant.pk)
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    agent = Agent.unscoped.get(slug="new-agent")
    assert agent.tenant_id == alice.tenant.pk


def test_admin_agent_add_rejects_invalid_settings(alice_staff):
    response = logged_in(alice_staff).post(
        "/admin/agents/agent/add/",
        agent_form(
            model="gemini-unknown",
            compression_trigger_tokens="100",
            compression_target_tokens="200",
            max_session_seconds="-3",
            allowed_origins='["ftp://x"]',
        ),
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert {"model", "compression_target_tokens", "max_session_seconds", "allowed_origins"} <= set(
        errors
    )
    assert not Agent.unscoped.exists()


def test_admin_agent_duplicate_slug_in_tenant_is_form_error(alice_staff, alice_agent):
    response = logged_in(alice_staff).post(
        "/admin/agents/agent/add/", agent_form(slug=alice_agent.slug)
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors


def test_admin_agent_change_form_shows_instruction_stats(alice_staff, alice_agent):
    alice_agent.system_instruction = "x" * 41
    alice_agent.save()
    response = logged_in(alice_staff).get(f"/admin/agents/agent/{alice_agent.pk}/change/")
    assert response.status_code == 200
    assert "41 characters, about 11 tokens" in response.text
    assert 'class="chars">41<' in response.text


def test_admin_tenant_autocomplete_shows_only_own_tenant(alice, charlie, alice_staff):
    response = logged_in(alice_staff).get(
        "/admin/autocomplete/",
        {"app_label": "agents", "model_name": "agent", "field_name": "tenant", "term": ""},
    )
    assert response.status_code == 200
    assert {r["id"] for r in response.json()["results"]} == {str(alice.tenant.pk)}


def test_admin_tenant_autocomplete_superuser_sees_all(alice_staff, charlie, superuser):
    # The control case: the same endpoint lists both tenants for a platform operator.
    params = {"app_label": "tenancy", "model_name": "membership", "field_name": "tenant"}
    staff = logged_in(alice_staff).get("/admin/autocomplete/", params)
    assert "Charlie" not in staff.text
    admin_response = logged_in(superuser).get("/admin/autocomplete/", params)
    assert admin_response.status_code == 200
    names = {r["text"] for r in admin_response.json()["results"]}
    assert {"Alice Inc", "Charlie Ltd"} <= names


def test_admin_superuser_sees_all_tenants_with_filter(superuser, alice, alice_agent, charlie_agent):
    client = logged_in(superuser)
    response = client.get("/admin/agents/agent/")
    assert "Alice agent" in response.text
    assert "Charlie agent" in response.text
    filtered = client.get(f"/admin/agents/agent/?tenant__id__exact={alice.tenant.pk}")
    assert "Alice agent" in filtered.text
    assert "Charlie agent" not in filtered.text


def test_admin_viewer_can_view_but_not_change(alice_viewer, alice_agent):
    client = logged_in(alice_viewer)
    assert client.get("/admin/agents/agent/").status_code == 200
    assert client.get("/admin/agents/agent/add/").status_code == 403
    response = client.post(
        f"/admin/agents/agent/{alice_agent.pk}/change/", agent_form(name="changed")
    )
    assert response.status_code == 403
    alice_agent.refresh_from_db()
    assert alice_agent.name == "Alice agent"


def test_admin_staff_without_membership_is_refused(db):
    user = get_user_model().objects.create_user("loner", password="pw", is_staff=True)
    response = logged_in(user).get("/admin/agents/agent/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_admin_agent_delete_other_tenant_is_refused(alice_staff, charlie_agent):
    client = logged_in(alice_staff)
    client.post(f"/admin/agents/agent/{charlie_agent.pk}/delete/", {"post": "yes"})
    assert Agent.unscoped.filter(pk=charlie_agent.pk).exists()
