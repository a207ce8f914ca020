"""The playground's page and token endpoint, and the agent admin's button and snippet:
staff only, tenant-scoped (another tenant's agent is a 404), no API key in any page."""

from __future__ import annotations

import pytest
from django.test import Client

from sessions.models import ClientToken
from sessions.tokens import TOKEN_PREFIX
from tests.helpers import logged_in

pytestmark = pytest.mark.django_db


def page_url(agent) -> str:  # type: ignore[no-untyped-def]
    return f"/playground/agents/{agent.pk}/"


def token_url(agent) -> str:  # type: ignore[no-untyped-def]
    return f"/playground/agents/{agent.pk}/token/"


def test_the_page_holds_a_token_endpoint_and_no_api_key(alice, alice_agent, alice_staff):
    response = logged_in(alice_staff).get(page_url(alice_agent))
    assert response.status_code == 200
    assert token_url(alice_agent) in response.text
    assert "voice_agent/voice-agent.js" in response.text or "playground/playground.js" in (
        response.text
    )
    assert alice.api_key not in response.text
    assert alice.api_key[:8] not in response.text


def test_the_token_endpoint_issues_a_one_use_token_for_the_staff_user(
    alice, alice_agent, alice_staff
):
    response = logged_in(alice_staff).post(token_url(alice_agent))
    assert response.status_code == 201
    body = response.json()
    assert body["token"].startswith(TOKEN_PREFIX)
    assert body["websocket_url"] == f"ws://testserver/ws/v1/live?token={body['token']}"
    token = ClientToken.unscoped.get()
    assert token.tenant_id == alice.tenant.pk
    assert token.agent_id == alice_agent.pk
    assert token.end_user_id == "playground:alice-admin"
    assert token.uses == 1
    assert token.metadata == {"source": "playground", "staff_user": "alice-admin"}


def test_another_tenants_agent_is_a_404_like_a_missing_one(alice_staff, charlie_agent, alice_agent):
    client = logged_in(alice_staff)
    missing = alice_agent.pk + charlie_agent.pk + 1000
    for url in (page_url(charlie_agent), f"/playground/agents/{missing}/"):
        assert client.get(url).status_code == 404
    for url in (token_url(charlie_agent), f"/playground/agents/{missing}/token/"):
        assert client.post(url).status_code == 404
    assert not ClientToken.unscoped.exists()


def test_a_superuser_may_try_any_tenants_agent(superuser, charlie, charlie_agent):
    response = logged_in(superuser).post(token_url(charlie_agent))
    assert response.status_code == 201
    assert ClientToken.unscoped.get().tenant_id == charlie.tenant.pk


def test_viewers_and_strangers_cannot(alice_agent, alice_viewer):
    # Trying an agent opens a billed session: a viewer may look at the agent, not try it.
    viewer = logged_in(alice_viewer)
    assert viewer.get(page_url(alice_agent)).status_code == 403
    assert viewer.post(token_url(alice_agent)).status_code == 403
    # Not signed in: the admin's login page, as for every admin page.
    anonymous = Client()
    response = anonymous.get(page_url(alice_agent))
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert anonymous.post(token_url(alice_agent)).status_code == 302
    assert not ClientToken.unscoped.exists()


def test_the_token_endpoint_takes_only_a_csrf_protected_post(alice_agent, alice_staff):
    client = logged_in(alice_staff)
    assert client.get(token_url(alice_agent)).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice_staff)
    assert strict.post(token_url(alice_agent)).status_code == 403
    assert not ClientToken.unscoped.exists()


def test_the_agent_admin_page_has_the_button_and_the_widget_snippet(
    alice_agent, alice_staff, alice_viewer
):
    alice_agent.allowed_origins = ["https://shop.example.com"]
    alice_agent.save()
    url = f"/admin/agents/agent/{alice_agent.pk}/change/"
    page = logged_in(alice_staff).get(url)
    assert page.status_code == 200
    assert f'href="{page_url(alice_agent)}"' in page.text
    assert "Try this agent" in page.text
    # The snippet, HTML-escaped in the page: the module and the tag, pointing here.
    assert (
        "&lt;script type=&quot;module&quot; "
        "src=&quot;http://testserver/static/voice_agent/widget.js&quot;&gt;" in page.text
    )
    assert "server=&quot;ws://testserver/ws/v1/live&quot;" in page.text
    assert "https://shop.example.com" in page.text
    viewer_page = logged_in(alice_viewer).get(url)
    assert viewer_page.status_code == 200
    assert "Try this agent" not in viewer_page.text
