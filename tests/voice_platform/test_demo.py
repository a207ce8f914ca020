from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from agents.models import Agent
from voice_platform.tenancy.models import ApiKey, Membership, Tenant

pytestmark = pytest.mark.django_db


def bootstrap() -> dict:
    out = StringIO()
    call_command("bootstrap_demo", "--json", stdout=out)
    return json.loads(out.getvalue())


def test_bootstrap_demo_json_shape_and_working_credentials():
    data = bootstrap()
    assert set(data) == {"tenant", "admin", "agent_id", "api_key"}
    assert set(data["admin"]) == {"username", "password"}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {data['api_key']}")
    response = client.get(f"/api/v1/agents/{data['agent_id']}/")
    assert response.status_code == 200
    agent = response.json()
    assert agent["response_modality"] == "AUDIO"
    assert agent["input_transcription"] is True
    assert agent["output_transcription"] is True
    assert APIClient().login(username=data["admin"]["username"], password=data["admin"]["password"])


def test_bootstrap_demo_is_idempotent_with_new_key_each_call():
    first, second = bootstrap(), bootstrap()
    assert first["tenant"] == second["tenant"]
    assert first["agent_id"] == second["agent_id"]
    assert first["admin"] == second["admin"]
    assert first["api_key"] != second["api_key"]
    assert Tenant.objects.count() == 1
    assert Agent.unscoped.count() == 1
    assert get_user_model().objects.count() == 1
    assert Membership.objects.count() == 1
    assert ApiKey.unscoped.count() == 2
    for key in (first["api_key"], second["api_key"]):  # old keys stay valid
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        assert client.get("/api/v1/agents/").status_code == 200


def test_bootstrap_demo_admin_sees_demo_agent_in_admin():
    data = bootstrap()
    client = APIClient()
    client.login(username=data["admin"]["username"], password=data["admin"]["password"])
    response = client.get("/admin/agents/agent/")
    assert response.status_code == 200
    assert "Demo assistant" in response.content.decode()


def test_bootstrap_demo_allowlists_time_and_example_com_mail():
    from tools.models import AgentTool

    bootstrap()
    bootstrap()  # idempotent: still one entry per tool
    entries = {e.tool.name: e.policy for e in AgentTool.unscoped.select_related("tool")}
    assert entries == {
        "get_current_time": {},
        "send_email": {"allowed_domains": ["example.com"]},
    }
