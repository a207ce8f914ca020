"""Configuration: the registry mirror, declarations and the session's allowlist copy.

The call path is tested next to its modules: ``test_admission``, ``test_execution``,
``test_outcome`` and ``test_idempotency``.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from tests.factories import AgentFactory
from tests.tools.conftest import allow, make_webhook
from tools.allowlist import tool_allowlist_for_agent, tool_declarations_for_agent
from tools.models import AgentTool, Tool
from tools.registry import get_tool, registry, unregister
from tools.services import (
    agent_tool_create,
    agent_tool_update,
    tool_sync_registry,
    webhook_tool_update,
)
from voice_platform.tenancy.scope import tenant_scope

# --- registry sync ---------------------------------------------------------------------------


def test_tool_sync_registry_mirrors_code_and_marks_missing_unavailable(db):
    report = tool_sync_registry()
    assert set(report.created) | set(report.updated) == set(registry())
    row = Tool.objects.get(name="send_email")
    assert row.available
    assert row.sensitive_args == ["body"]
    assert row.policy_schema == get_tool("send_email").policy_schema()
    Tool.objects.create(name="gone_tool", synced_at=row.synced_at)
    report = tool_sync_registry()
    assert report.unavailable == ["gone_tool"]
    assert not Tool.objects.get(name="gone_tool").available


def test_tool_sync_command_reports(db, capsys):
    from django.core.management import call_command

    call_command("tools_sync")
    assert f"updated {len(registry())}" in capsys.readouterr().out


# --- declarations ----------------------------------------------------------------------------


def test_tool_declarations_for_agent_lists_exactly_enabled_available_tools(
    alice, alice_agent, scratch_tools
):
    allow(alice_agent, "get_current_time")
    allow(alice_agent, "send_email", enabled=False)
    allow(alice_agent, "t_background")
    on = make_webhook(alice.tenant, url="https://hooks.example.com/a", name="hook_on")
    off = make_webhook(alice.tenant, url="https://hooks.example.com/b", name="hook_off",
                       enabled=False)  # fmt: skip
    for webhook in (on, off):
        AgentTool.unscoped.create(tenant=alice.tenant, agent=alice_agent, webhook_tool=webhook)
    other_agent = AgentFactory(tenant=alice.tenant)
    allow(other_agent, "lookup_record")
    with tenant_scope(alice.tenant.pk):
        declarations = tool_declarations_for_agent(agent=alice_agent)
    by_name = {d.name: d for d in declarations}
    assert list(by_name) == ["get_current_time", "t_background", "hook_on"]
    assert by_name["hook_on"].parameters.required == ["order_id"]
    assert by_name["t_background"].behavior is not None
    unregister("t_background")  # the code no longer has it: no longer declared
    with tenant_scope(alice.tenant.pk):
        assert [d.name for d in tool_declarations_for_agent(agent=alice_agent)] == [
            "get_current_time",
            "hook_on",
        ]


# --- the allowlist ---------------------------------------------------------------------------


def test_tool_allowlist_for_agent_resolves_entry_settings_over_tool_defaults(
    alice, alice_agent, scratch_tools
):
    allow(alice_agent, "send_email", timeout_seconds=3.5, rate_limit="2/min")
    allow(alice_agent, "t_background")
    hook = make_webhook(alice.tenant, url="https://hooks.example.com/a", timeout_seconds=4)
    AgentTool.unscoped.create(tenant=alice.tenant, agent=alice_agent, webhook_tool=hook)
    with tenant_scope(alice.tenant.pk):
        allowlist = tool_allowlist_for_agent(agent=alice_agent)
    mail, background = allowlist.resolve("send_email"), allowlist.resolve("t_background")
    webhook = allowlist.resolve("order_status")
    assert (mail.timeout, mail.rate_limit, mail.sensitive) == (3.5, "2/min", ("body",))
    spec = get_tool("t_background")
    assert (background.timeout, background.rate_limit) == (spec.timeout, spec.rate_limit)
    assert (background.behavior, background.scheduling) == ("NON_BLOCKING", "INTERRUPT")
    assert webhook.webhook.pk == hook.pk
    assert (webhook.timeout, webhook.rate_limit, webhook.behavior) == (4, "30/min", "BLOCKING")
    assert allowlist.resolve("lookup_record") is None


def test_tool_allowlist_for_agent_leaves_out_a_webhook_named_like_a_platform_tool(
    alice, alice_agent
):
    # Written past WebhookTool.clean (which refuses the name): the platform tool wins.
    clash = make_webhook(alice.tenant, url="https://hooks.example.com/a", name="lookup_record")
    AgentTool.unscoped.create(tenant=alice.tenant, agent=alice_agent, webhook_tool=clash)
    with tenant_scope(alice.tenant.pk):
        assert tool_allowlist_for_agent(agent=alice_agent).resolve("lookup_record") is None
    allow(alice_agent, "lookup_record")
    with tenant_scope(alice.tenant.pk):
        resolved = tool_allowlist_for_agent(agent=alice_agent).resolve("lookup_record")
    assert resolved.webhook is None
    assert resolved.spec is get_tool("lookup_record")


def test_tool_allowlist_current_reloads_after_an_entry_changes(alice, alice_agent):
    entry = allow(alice_agent, "send_email", policy={"allowed_domains": ["example.com"]})
    with tenant_scope(alice.tenant.pk):
        allowlist = tool_allowlist_for_agent(agent=alice_agent)
        assert allowlist.current() is allowlist  # unchanged: the same copy, no query
        agent_tool_update(agent_tool=entry, policy={"allowed_domains": ["example.org"]})
        reloaded = allowlist.current()
        assert reloaded is not allowlist
        assert reloaded.resolve("send_email").entry.policy == {"allowed_domains": ["example.org"]}
        assert reloaded.current() is reloaded
        agent_tool_update(agent_tool=entry, enabled=False)
        assert reloaded.current().resolve("send_email") is None


def test_tool_allowlist_current_reloads_after_a_webhook_tool_changes(alice, alice_agent):
    hook = make_webhook(alice.tenant, url="https://hooks.example.com/a")
    AgentTool.unscoped.create(tenant=alice.tenant, agent=alice_agent, webhook_tool=hook)
    with tenant_scope(alice.tenant.pk):
        allowlist = tool_allowlist_for_agent(agent=alice_agent)
        assert allowlist.resolve("order_status") is not None
        webhook_tool_update(webhook_tool=hook, enabled=False)
        assert allowlist.current().resolve("order_status") is None


def test_tool_allowlist_current_ignores_another_tenants_changes(alice_agent, charlie_agent):
    allow(alice_agent, "get_current_time")
    charlie_entry = allow(charlie_agent, "get_current_time")
    with tenant_scope(alice_agent.tenant_id):
        allowlist = tool_allowlist_for_agent(agent=alice_agent)
    with tenant_scope(charlie_agent.tenant_id):
        agent_tool_update(agent_tool=charlie_entry, enabled=False)
    with tenant_scope(alice_agent.tenant_id):
        assert allowlist.current() is allowlist
        assert allowlist.current().resolve("get_current_time") is not None


# --- allowlist writes ------------------------------------------------------------------------


def test_agent_tool_create_refuses_another_tenants_webhook_tool(alice, charlie, alice_agent):
    theirs = make_webhook(charlie.tenant, url="https://hooks.example.com/c")
    with tenant_scope(alice.tenant.pk), pytest.raises(ValidationError) as refused:
        agent_tool_create(tenant=alice.tenant, agent=alice_agent, webhook_tool_id=theirs.pk)
    assert refused.value.message_dict == {"webhook_tool": ["Unknown webhook tool."]}
    assert not AgentTool.unscoped.filter(agent=alice_agent).exists()
