"""Admin: tenant isolation, read-only audit and outbox, write-only secrets, the inline."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.helpers import logged_in
from tests.tools.conftest import admit_call, allow, make_session, make_webhook, start_call
from tools.models import AgentTool, LookupRecord, OutboxEmail, ToolCallRecord, WebhookTool
from voice_platform.crypto import decrypt_str

pytestmark = pytest.mark.django_db


def record_for(agent, call_id: str, name: str = "nope") -> ToolCallRecord:
    record = admit_call(make_session(agent), name, {}, call_id=call_id).record
    assert record.status == "rejected"  # not allowlisted: finished at once
    return record


# --- audit log ------------------------------------------------------------------------------


def test_admin_tool_calls_list_shows_only_own_tenant(alice_staff, alice_agent, charlie_agent):
    record_for(alice_agent, "alice-call-1")
    record_for(charlie_agent, "charlie-call-1")
    response = logged_in(alice_staff).get("/admin/tools/toolcallrecord/")
    assert response.status_code == 200
    assert "alice-call-1" in response.text
    assert "charlie-call-1" not in response.text


def test_admin_tool_calls_filters_by_status_and_agent_choices_are_own(
    alice_staff, alice_agent, charlie_agent
):
    allow(alice_agent, "get_current_time")
    session = make_session(alice_agent)
    start_call(session, alice_agent, "ok-call", "get_current_time", {"timezone": "UTC"})
    record_for(alice_agent, "refused-call")
    client = logged_in(alice_staff)
    running = client.get("/admin/tools/toolcallrecord/?status__exact=running")
    assert "ok-call" in running.text
    assert "refused-call" not in running.text
    page = client.get("/admin/tools/toolcallrecord/")
    assert "Charlie agent" not in page.text  # the agent filter lists own agents only


def test_admin_tool_call_cannot_be_added_changed_or_deleted(superuser, alice_staff, alice_agent):
    record = record_for(alice_agent, "immutable-call")
    url = f"/admin/tools/toolcallrecord/{record.pk}"
    for client in (logged_in(alice_staff), logged_in(superuser)):
        assert client.get("/admin/tools/toolcallrecord/add/").status_code == 403
        view = client.get(f"{url}/change/")
        assert view.status_code == 200  # a read-only view
        assert 'name="_save"' not in view.text
        assert "pending_arguments" not in view.text
        post = client.post(f"{url}/change/", {"rejection_reason": "edited"})
        assert post.status_code == 403
        assert client.post(f"{url}/delete/", {"post": "yes"}).status_code == 403
        bulk = client.post(
            "/admin/tools/toolcallrecord/",
            {"action": "delete_selected", "_selected_action": [record.pk], "post": "yes"},
        )
        assert bulk.status_code in (200, 302)
    stored = ToolCallRecord.unscoped.get(pk=record.pk)
    assert stored.rejection_reason == record.rejection_reason


def test_admin_tool_call_of_other_tenant_is_not_found(alice_staff, charlie_agent):
    record = record_for(charlie_agent, "charlie-secret-call")
    response = logged_in(alice_staff).get(f"/admin/tools/toolcallrecord/{record.pk}/change/")
    assert response.status_code == 302  # redirected to the index: no data leaks


def test_admin_viewer_can_view_tool_calls(alice_viewer, alice_agent):
    record_for(alice_agent, "viewer-visible")
    response = logged_in(alice_viewer).get("/admin/tools/toolcallrecord/")
    assert response.status_code == 200
    assert "viewer-visible" in response.text


def test_admin_superuser_sees_all_tool_calls(superuser, alice_agent, charlie_agent):
    record_for(alice_agent, "alice-call-x")
    record_for(charlie_agent, "charlie-call-x")
    text = logged_in(superuser).get("/admin/tools/toolcallrecord/").text
    assert "alice-call-x" in text
    assert "charlie-call-x" in text


# --- outbox, lookup table, registry -------------------------------------------------------


def test_admin_outbox_is_read_only_and_scoped(alice, charlie, alice_staff):
    own = OutboxEmail.unscoped.create(
        tenant=alice.tenant, to="a@example.com", subject="Own", body="x"
    )
    OutboxEmail.unscoped.create(
        tenant=charlie.tenant, to="c@example.com", subject="Foreign", body="y"
    )
    client = logged_in(alice_staff)
    listing = client.get("/admin/tools/outboxemail/")
    assert "Own" in listing.text
    assert "Foreign" not in listing.text
    assert client.get("/admin/tools/outboxemail/add/").status_code == 403
    assert (
        client.post(f"/admin/tools/outboxemail/{own.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert OutboxEmail.unscoped.filter(pk=own.pk).exists()


def test_admin_lookup_records_crud_is_scoped(alice, charlie, alice_staff, alice_viewer):
    foreign = LookupRecord.unscoped.create(tenant=charlie.tenant, key="foreign-key", value="c")
    client = logged_in(alice_staff)
    response = client.post(
        "/admin/tools/lookuprecord/add/",
        {"tenant": charlie.tenant.pk, "key": "plan", "value": "gold"},
    )
    assert response.status_code == 302
    assert (
        LookupRecord.unscoped.get(key="plan").tenant_id == alice.tenant.pk
    )  # forged tenant ignored
    assert "foreign-key" not in client.get("/admin/tools/lookuprecord/").text
    client.post(f"/admin/tools/lookuprecord/{foreign.pk}/delete/", {"post": "yes"})
    assert LookupRecord.unscoped.filter(pk=foreign.pk).exists()
    assert logged_in(alice_viewer).get("/admin/tools/lookuprecord/add/").status_code == 403


def test_admin_registry_tools_are_read_only_for_members(alice_staff):
    client = logged_in(alice_staff)
    listing = client.get("/admin/tools/tool/")
    assert listing.status_code == 200
    assert "send_email" in listing.text
    assert client.get("/admin/tools/tool/add/").status_code == 403


# --- webhook tools --------------------------------------------------------------------------


def webhook_form(tenant_id="", **overrides):
    data = {
        "tenant": tenant_id,
        "name": "crm_lookup",
        "description": "Look a customer up.",
        "parameters_schema": '{"type": "object", "properties": {"email": {"type": "string"}}}',
        "url": "https://crm.example.com/hook",
        "timeout_seconds": "5",
        "rate_limit": "10/min",
        "enabled": "on",
        "signing_secret": "top-secret-value",
    }
    data.update(overrides)
    return data


def test_admin_webhook_tool_add_encrypts_secret_and_forces_own_tenant(alice, charlie, alice_staff):
    client = logged_in(alice_staff)
    response = client.post("/admin/tools/webhooktool/add/", webhook_form(charlie.tenant.pk))
    assert response.status_code == 302, response.context["adminform"].form.errors
    webhook = WebhookTool.unscoped.get(name="crm_lookup")
    assert webhook.tenant_id == alice.tenant.pk
    assert "top-secret-value" not in webhook.secret_encrypted
    assert decrypt_str(webhook.secret_encrypted) == "top-secret-value"
    page = client.get(f"/admin/tools/webhooktool/{webhook.pk}/change/")
    assert "top-secret-value" not in page.text
    # Blank secret on change keeps the current one.
    client.post(
        f"/admin/tools/webhooktool/{webhook.pk}/change/",
        webhook_form(alice.tenant.pk, signing_secret="", description="Changed"),
    )
    webhook.refresh_from_db()
    assert webhook.description == "Changed"
    assert decrypt_str(webhook.secret_encrypted) == "top-secret-value"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"url": "http://crm.example.com/hook"}, "url"),
        ({"name": "send_email"}, "name"),
        ({"name": "bad name"}, "name"),
        ({"parameters_schema": '{"type": "array"}'}, "parameters_schema"),
        ({"parameters_schema": '{"type": "object", "properties": 5}'}, "parameters_schema"),
        ({"signing_secret": ""}, "signing_secret"),
        ({"rate_limit": "lots"}, "rate_limit"),
        ({"timeout_seconds": "500"}, "timeout_seconds"),
    ],
)
def test_admin_webhook_tool_add_rejects_invalid(alice_staff, overrides, field):
    response = logged_in(alice_staff).post(
        "/admin/tools/webhooktool/add/", webhook_form(**overrides)
    )
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not WebhookTool.unscoped.exists()


def test_admin_webhook_tools_of_other_tenant_invisible(alice_staff, charlie):
    foreign = make_webhook(charlie.tenant, url="https://c.example.com/h", name="charlie_hook")
    client = logged_in(alice_staff)
    assert "charlie_hook" not in client.get("/admin/tools/webhooktool/").text
    assert client.get(f"/admin/tools/webhooktool/{foreign.pk}/change/").status_code == 302


# --- the allowlist inline on the agent -------------------------------------------------------

PREFIX = "allowlisted_tools"


def agent_form(agent, rows=(), initial=0, **overrides):
    data = {
        "tenant": agent.tenant_id,
        "name": agent.name,
        "slug": agent.slug,
        "enabled": "on",
        "model": settings.LIVE_MODELS[0],
        "response_modality": "AUDIO",
        "voice": "",
        "system_instruction": "",
        "context_limit_tokens": "128000",
        "session_resumption": "on",
        "vad_enabled": "on",
        "max_session_seconds": "900",
        "resume_window_seconds": "600",
        "allowed_origins": "[]",
        f"{PREFIX}-TOTAL_FORMS": str(len(rows)),
        f"{PREFIX}-INITIAL_FORMS": str(initial),
        f"{PREFIX}-MIN_NUM_FORMS": "0",
        f"{PREFIX}-MAX_NUM_FORMS": "1000",
    }
    for i, row in enumerate(rows):
        for key, value in row.items():
            data[f"{PREFIX}-{i}-{key}"] = value
    data.update(overrides)
    return data


def tool_pk(name):
    from tools.models import Tool

    return Tool.objects.get(name=name).pk


def test_admin_inline_adds_allowlist_entry_with_agents_tenant(alice_staff, alice_agent):
    row = {
        "tool": tool_pk("send_email"),
        "webhook_tool": "",
        "enabled": "on",
        "policy": '{"allowed_domains": ["example.com"]}',
        "rate_limit": "5/min",
        "timeout_seconds": "",
        "agent": alice_agent.pk,
    }
    response = logged_in(alice_staff).post(
        f"/admin/agents/agent/{alice_agent.pk}/change/", agent_form(alice_agent, [row])
    )
    assert response.status_code == 302, (
        response.context and response.context["inline_admin_formsets"][0].formset.errors
    )
    entry = AgentTool.unscoped.get(agent=alice_agent)
    assert entry.tenant_id == alice_agent.tenant_id
    assert entry.policy == {"allowed_domains": ["example.com"]}


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"policy": '{"allowed_domains": "example.com"}'}, "policy"),
        ({"policy": '{"unknown": 1}'}, "policy"),
        ({"rate_limit": "often"}, "rate_limit"),
        ({"timeout_seconds": "999"}, "timeout_seconds"),
        ({"tool": ""}, "__all__"),
    ],
)
def test_admin_inline_validates_policy_rate_and_timeout(alice_staff, alice_agent, row, field):
    base = {"tool": tool_pk("send_email"), "webhook_tool": "", "enabled": "on", "policy": "{}",
            "rate_limit": "", "timeout_seconds": "", "agent": alice_agent.pk}  # fmt: skip
    response = logged_in(alice_staff).post(
        f"/admin/agents/agent/{alice_agent.pk}/change/",
        agent_form(alice_agent, [{**base, **row}]),
    )
    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][0].formset.errors
    assert field in errors[0]
    assert not AgentTool.unscoped.exists()


def test_admin_inline_offers_and_accepts_only_own_webhook_tools(
    alice, charlie, alice_staff, alice_agent
):
    own = make_webhook(alice.tenant, url="https://a.example.com/h", name="alice_hook")
    foreign = make_webhook(charlie.tenant, url="https://c.example.com/h", name="charlie_hook")
    client = logged_in(alice_staff)
    page = client.get(f"/admin/agents/agent/{alice_agent.pk}/change/")
    assert page.status_code == 200
    assert "alice_hook" in page.text
    assert "charlie_hook" not in page.text
    row = {"tool": "", "webhook_tool": foreign.pk, "enabled": "on", "policy": "{}",
           "rate_limit": "", "timeout_seconds": "", "agent": alice_agent.pk}  # fmt: skip
    response = client.post(
        f"/admin/agents/agent/{alice_agent.pk}/change/", agent_form(alice_agent, [row])
    )
    assert response.status_code == 200
    assert not AgentTool.unscoped.exists()
    row["webhook_tool"] = own.pk
    response = client.post(
        f"/admin/agents/agent/{alice_agent.pk}/change/", agent_form(alice_agent, [row])
    )
    assert response.status_code == 302
    assert AgentTool.unscoped.get().webhook_tool_id == own.pk


def test_admin_inline_superuser_sees_only_agents_tenant_webhooks(
    alice, charlie, superuser, alice_agent
):
    make_webhook(alice.tenant, url="https://a.example.com/h", name="alice_hook")
    make_webhook(charlie.tenant, url="https://c.example.com/h", name="charlie_hook")
    page = logged_in(superuser).get(f"/admin/agents/agent/{alice_agent.pk}/change/")
    assert "alice_hook" in page.text
    assert "charlie_hook" not in page.text


def test_admin_inline_viewer_is_read_only(alice_viewer, alice_agent):
    allow(alice_agent, "get_current_time")
    client = logged_in(alice_viewer)
    page = client.get(f"/admin/agents/agent/{alice_agent.pk}/change/")
    assert page.status_code == 200
    assert "get_current_time" in page.text
    response = client.post(
        f"/admin/agents/agent/{alice_agent.pk}/change/", agent_form(alice_agent, [], initial=0)
    )
    assert response.status_code == 403
    assert AgentTool.unscoped.count() == 1


def test_admin_agent_post_without_inline_data_keeps_allowlist(alice_staff, alice_agent):
    allow(alice_agent, "get_current_time")
    data = {k: v for k, v in agent_form(alice_agent, name="Renamed").items() if PREFIX not in k}
    response = logged_in(alice_staff).post(f"/admin/agents/agent/{alice_agent.pk}/change/", data)
    assert response.status_code == 302
    alice_agent.refresh_from_db()
    assert alice_agent.name == "Renamed"
    assert AgentTool.unscoped.filter(agent=alice_agent).count() == 1


def test_admin_inline_deletes_allowlist_entry(alice_staff, alice_agent):
    entry = allow(alice_agent, "get_current_time")
    row = {"id": entry.pk, "tool": tool_pk("get_current_time"), "webhook_tool": "",
           "enabled": "on", "policy": "{}", "rate_limit": "", "timeout_seconds": "",
           "agent": alice_agent.pk, "DELETE": "on"}  # fmt: skip
    response = logged_in(alice_staff).post(
        f"/admin/agents/agent/{alice_agent.pk}/change/", agent_form(alice_agent, [row], initial=1)
    )
    assert response.status_code == 302
    assert not AgentTool.unscoped.exists()
