"""REST: allowlist CRUD, webhook tools, the audit log with filters and CSV export."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.utils import timezone

from tests.tools.conftest import admit_call, allow, make_session, make_webhook, start_call
from tools.models import AgentTool, ToolCallRecord, WebhookTool
from voice_platform.crypto import decrypt_str

pytestmark = pytest.mark.django_db


def tools_url(agent, pk=None) -> str:
    base = f"/api/v1/agents/{agent.pk}/tools/"
    return base if pk is None else f"{base}{pk}/"


# --- allowlist -------------------------------------------------------------------------------


def test_agent_tools_create_list_update_delete(alice, alice_agent):
    created = alice.client.post(
        tools_url(alice_agent),
        {
            "tool": "send_email",
            "policy": {"allowed_domains": ["example.com"]},
            "rate_limit": "5/min",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["tool"], body["name"], body["available"], body["webhook_tool"]) == (
        "send_email", "send_email", True, None,
    )  # fmt: skip
    entry = AgentTool.unscoped.get(pk=body["id"])
    assert entry.tenant_id == alice.tenant.pk
    listing = alice.client.get(tools_url(alice_agent)).json()
    assert [row["id"] for row in listing["results"]] == [entry.pk]
    patched = alice.client.patch(
        tools_url(alice_agent, entry.pk), {"enabled": False, "timeout_seconds": 2}, format="json"
    )
    assert patched.status_code == 200, patched.content
    entry.refresh_from_db()
    assert (entry.enabled, entry.timeout_seconds) == (False, 2.0)
    assert alice.client.put(tools_url(alice_agent, entry.pk), {}, format="json").status_code == 405
    assert alice.client.delete(tools_url(alice_agent, entry.pk)).status_code == 204
    assert not AgentTool.unscoped.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"tool": "no_such_tool"}, "tool"),
        ({}, "tool"),
        ({"tool": "send_email", "policy": {"allowed_domains": "x"}}, "policy"),
        ({"tool": "send_email", "rate_limit": "lots"}, "rate_limit"),
        ({"tool": "send_email", "timeout_seconds": 0}, "timeout_seconds"),
        ({"tool": "send_email", "timeout_seconds": 121}, "timeout_seconds"),
        ({"tool": "get_current_time", "policy": {"x": 1}}, "policy"),
    ],
)
def test_agent_tools_create_rejects_invalid_with_field_errors(alice, alice_agent, payload, field):
    response = alice.client.post(tools_url(alice_agent), payload, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not AgentTool.unscoped.exists()


def test_agent_tools_duplicate_is_400(alice, alice_agent):
    allow(alice_agent, "send_email")
    response = alice.client.post(tools_url(alice_agent), {"tool": "send_email"}, format="json")
    assert response.status_code == 400


def test_agent_tools_webhook_tool_by_id_own_only(alice, charlie, alice_agent):
    own = make_webhook(alice.tenant, url="https://a.example.com/h", name="alice_hook")
    foreign = make_webhook(charlie.tenant, url="https://c.example.com/h", name="charlie_hook")
    bad = alice.client.post(tools_url(alice_agent), {"webhook_tool": foreign.pk}, format="json")
    assert bad.status_code == 400
    assert bad.json() == {"webhook_tool": ["Unknown webhook tool."]}
    good = alice.client.post(tools_url(alice_agent), {"webhook_tool": own.pk}, format="json")
    assert good.status_code == 201
    assert (good.json()["webhook_tool"], good.json()["name"]) == (own.pk, "alice_hook")


def test_agent_tools_other_tenant_is_404(alice, charlie_agent):
    entry = allow(charlie_agent, "send_email")
    assert alice.client.get(tools_url(charlie_agent)).status_code == 404
    assert (
        alice.client.post(
            tools_url(charlie_agent), {"tool": "send_email"}, format="json"
        ).status_code
        == 404
    )
    assert alice.client.get(tools_url(charlie_agent, entry.pk)).status_code == 404
    assert (
        alice.client.patch(
            tools_url(charlie_agent, entry.pk), {"enabled": False}, format="json"
        ).status_code
        == 404
    )
    assert alice.client.delete(tools_url(charlie_agent, entry.pk)).status_code == 404
    entry.refresh_from_db()
    assert entry.enabled


def test_agent_tools_entry_of_another_agent_is_404(alice, alice_agent):
    from tests.factories import AgentFactory

    other = AgentFactory(tenant=alice.tenant)
    entry = allow(other, "send_email")
    assert alice.client.get(tools_url(alice_agent, entry.pk)).status_code == 404


# --- webhook tools ---------------------------------------------------------------------------

WEBHOOK = {
    "name": "crm_lookup",
    "description": "Look a customer up.",
    "parameters_schema": {"type": "object", "properties": {"email": {"type": "string"}}},
    "url": "https://crm.example.com/hook",
    "secret": "the-signing-secret",
}


def test_webhook_tools_crud_secret_is_write_only(alice):
    created = alice.client.post("/api/v1/webhook-tools/", WEBHOOK, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert "secret" not in body
    assert body["has_secret"] is True
    assert "the-signing-secret" not in created.content.decode()
    webhook = WebhookTool.unscoped.get(pk=body["id"])
    assert decrypt_str(webhook.secret_encrypted) == "the-signing-secret"
    detail = alice.client.get(f"/api/v1/webhook-tools/{webhook.pk}/")
    assert "the-signing-secret" not in detail.content.decode()
    patched = alice.client.patch(
        f"/api/v1/webhook-tools/{webhook.pk}/",
        {"secret": "rotated", "enabled": False},
        format="json",
    )
    assert patched.status_code == 200
    webhook.refresh_from_db()
    assert decrypt_str(webhook.secret_encrypted) == "rotated"
    assert not webhook.enabled
    assert alice.client.delete(f"/api/v1/webhook-tools/{webhook.pk}/").status_code == 204


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"secret": ""}, "secret"),
        ({"url": "http://crm.example.com/hook"}, "url"),
        ({"name": "get_current_time"}, "name"),
        ({"parameters_schema": {"type": "string"}}, "parameters_schema"),
        ({"parameters_schema": {"type": "object", "required": "email"}}, "parameters_schema"),
    ],
)
def test_webhook_tools_create_rejects_invalid(alice, overrides, field):
    payload = {**WEBHOOK, **overrides}
    if overrides.get("secret") == "":
        payload.pop("secret")
    response = alice.client.post("/api/v1/webhook-tools/", payload, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_webhook_tools_other_tenant_is_404(alice, charlie):
    foreign = make_webhook(charlie.tenant, url="https://c.example.com/h", name="charlie_hook")
    assert alice.client.get("/api/v1/webhook-tools/").json()["count"] == 0
    assert alice.client.get(f"/api/v1/webhook-tools/{foreign.pk}/").status_code == 404
    assert (
        alice.client.patch(
            f"/api/v1/webhook-tools/{foreign.pk}/", {"enabled": False}, format="json"
        ).status_code
        == 404
    )
    assert alice.client.delete(f"/api/v1/webhook-tools/{foreign.pk}/").status_code == 404
    assert WebhookTool.unscoped.get(pk=foreign.pk).enabled


def test_webhook_tools_same_name_in_two_tenants(alice, charlie):
    make_webhook(charlie.tenant, url="https://c.example.com/h", name="crm_lookup")
    assert alice.client.post("/api/v1/webhook-tools/", WEBHOOK, format="json").status_code == 201
    assert alice.client.post("/api/v1/webhook-tools/", WEBHOOK, format="json").status_code == 400


# --- audit log -------------------------------------------------------------------------------


def make_records(agent, end_user="u1"):
    """One rejected (not allowlisted), one running, one rejected by validation."""
    allow(agent, "send_email")
    session = make_session(agent, end_user)
    calls = [
        ("c-nope", "nope", {}),
        ("c-mail", "send_email", {"to": "bob@example.com", "subject": "S", "body": "private text"}),
        ("c-bad", "send_email", {"to": "x"}),
    ]
    records = []
    for call_id, name, args in calls:
        if call_id == "c-mail":
            records.append(start_call(session, agent, call_id, name, args))
            continue
        records.append(admit_call(session, name, args, call_id=call_id).record)
    return records


def test_tool_calls_list_only_own_and_redacted(alice, alice_agent, charlie_agent):
    own = make_records(alice_agent)
    make_records(charlie_agent)
    response = alice.client.get("/api/v1/tool-calls/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert {row["id"] for row in body["results"]} == {r.pk for r in own}
    mail = next(row for row in body["results"] if row["call_id"] == "c-mail")
    assert mail["arguments"]["body"] == "[redacted]"
    assert "private text" not in response.content.decode()
    assert "pending_arguments" not in mail


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=running", {"c-mail"}),
        ("status=rejected", {"c-nope", "c-bad"}),
        ("tool=send_email", {"c-mail", "c-bad"}),
        ("tool=send_email&status=rejected", {"c-bad"}),
    ],
)
def test_tool_calls_list_filters(alice, alice_agent, query, expected):
    make_records(alice_agent)
    rows = alice.client.get(f"/api/v1/tool-calls/?{query}").json()["results"]
    assert {row["call_id"] for row in rows} == expected


def test_tool_calls_list_filters_by_agent_and_time(alice, alice_agent):
    from tests.factories import AgentFactory

    other_agent = AgentFactory(tenant=alice.tenant)
    make_records(alice_agent)
    make_records(other_agent)
    by_agent = alice.client.get(f"/api/v1/tool-calls/?agent={other_agent.pk}").json()
    assert by_agent["count"] == 3
    assert {row["agent"] for row in by_agent["results"]} == {other_agent.pk}
    now = timezone.now()
    past = (now - dt.timedelta(hours=1)).isoformat()
    future = (now + dt.timedelta(hours=1)).isoformat()
    assert alice.client.get("/api/v1/tool-calls/", {"since": past}).json()["count"] == 6
    assert alice.client.get("/api/v1/tool-calls/", {"since": future}).json()["count"] == 0
    assert alice.client.get("/api/v1/tool-calls/", {"until": past}).json()["count"] == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=yesterday", "since"),
        ("until=2026-13-45", "until"),
        ("status=exploded", "status"),
        ("agent=abc", "agent"),
        ("since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
    ],
)
def test_tool_calls_list_bad_filters_are_400(alice, query, field):
    for path in ("/api/v1/tool-calls/", "/api/v1/tool-calls/export.csv"):
        response = alice.client.get(f"{path}?{query}")
        assert response.status_code == 400, path
        assert field in response.json()


def test_tool_calls_are_read_only(alice, alice_agent):
    record = make_records(alice_agent)[0]
    url = f"/api/v1/tool-calls/{record.pk}/"
    assert alice.client.get(url).status_code == 200
    assert alice.client.put(url, {"status": "succeeded"}, format="json").status_code == 405
    assert alice.client.patch(url, {"status": "succeeded"}, format="json").status_code == 405
    assert alice.client.delete(url).status_code == 405
    assert alice.client.post("/api/v1/tool-calls/", {}, format="json").status_code == 405
    assert ToolCallRecord.unscoped.get(pk=record.pk).status == record.status


def test_tool_call_of_other_tenant_is_404(alice, charlie_agent):
    record = make_records(charlie_agent)[0]
    assert alice.client.get(f"/api/v1/tool-calls/{record.pk}/").status_code == 404


def test_tool_calls_export_csv_filtered_redacted_and_scoped(alice, alice_agent, charlie_agent):
    make_records(alice_agent)
    make_records(charlie_agent, end_user="charlie-user")
    response = alice.client.get("/api/v1/tool-calls/export.csv?tool=send_email")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    content = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(content)))
    assert {row["call_id"] for row in rows} == {"c-mail", "c-bad"}
    assert "private text" not in content
    assert "charlie-user" not in content
    mail = next(row for row in rows if row["call_id"] == "c-mail")
    assert '"body": "[redacted]"' in mail["arguments"]
    assert mail["status"] == "running"


def test_tool_calls_export_requires_auth(db):
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/tool-calls/export.csv").status_code == 401


def test_openapi_schema_documents_tool_endpoints_without_warnings(db):
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        schema = SchemaGenerator().get_schema(request=None, public=True)
    assert not GENERATOR_STATS._warn_cache, GENERATOR_STATS._warn_cache
    assert not GENERATOR_STATS._error_cache, GENERATOR_STATS._error_cache
    paths = schema["paths"]
    assert set(paths["/api/v1/agents/{agent_id}/tools/{id}/"]) == {"get", "patch", "delete"}
    assert set(paths["/api/v1/tool-calls/{id}/"]) == {"get"}
    export = paths["/api/v1/tool-calls/export.csv"]["get"]
    assert "text/csv" in export["responses"]["200"]["content"]
    assert {p["name"] for p in export["parameters"]} >= {
        "agent",
        "tool",
        "status",
        "since",
        "until",
    }
    secret = schema["components"]["schemas"]["WebhookToolRequest"]["properties"]["secret"]
    assert secret["writeOnly"] is True
