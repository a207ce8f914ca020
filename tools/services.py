"""Writes for the tools' configuration: the registry mirror, allowlists and webhook tools.

The call path lives elsewhere, one concern a module: ``admission`` (decide and write the
audit row), ``execution`` (run a call once), ``outcome`` (answers, finishing early),
``notify`` (wake the session); ``calls`` is what the live bridge imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agents.models import Agent
from tools.models import AgentTool, Tool, WebhookTool
from tools.registry import registry
from voice_platform.crypto import encrypt_str
from voice_platform.tenancy.models import Tenant
from voice_platform.writable import assign_writable

# --- registry mirror ---------------------------------------------------------------------


@dataclass(frozen=True)
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)


@transaction.atomic
def tool_sync_registry() -> SyncReport:
    """Upsert a ``Tool`` row per registered tool; mark rows missing from code unavailable."""
    now = timezone.now()
    specs = registry()
    report = SyncReport()
    for name, spec in sorted(specs.items()):
        _, created = Tool.objects.update_or_create(
            name=name,
            defaults={
                "description": spec.description,
                "parameters_schema": spec.parameters_schema(),
                "policy_schema": spec.policy_schema(),
                "default_timeout": spec.timeout,
                "default_rate_limit": spec.rate_limit,
                "behavior": spec.behavior,
                "scheduling": spec.scheduling or "",
                "sensitive_args": list(spec.sensitive),
                "available": True,
                "synced_at": now,
            },
        )
        (report.created if created else report.updated).append(name)
    missing = Tool.objects.filter(available=True).exclude(name__in=list(specs))
    report.unavailable.extend(missing.values_list("name", flat=True))
    missing.update(available=False, synced_at=now)
    return report


# --- allowlist and webhook tools -----------------------------------------------------------

AGENT_TOOL_WRITABLE_FIELDS = ("enabled", "policy", "rate_limit", "timeout_seconds")


@transaction.atomic
def agent_tool_create(
    *,
    tenant: Tenant,
    agent: Agent,
    tool_name: str | None = None,
    webhook_tool_id: int | None = None,
    **fields: Any,
) -> AgentTool:
    """Allowlist a registry tool (by name) or one of the tenant's webhook tools (by id)."""
    if (tool_name is None) == (webhook_tool_id is None):
        raise ValidationError({"tool": "Give either tool (a platform tool name) or webhook_tool."})
    entry = AgentTool(tenant=tenant, agent=agent)
    if tool_name is not None:
        tool = Tool.objects.filter(name=tool_name).first()
        if tool is None:
            raise ValidationError({"tool": f"Unknown tool {tool_name!r}."})
        entry.tool = tool
    else:
        webhook = WebhookTool.objects.filter(tenant=tenant, pk=webhook_tool_id).first()
        if webhook is None:  # another tenant's id reads exactly like a missing one
            raise ValidationError({"webhook_tool": "Unknown webhook tool."})
        entry.webhook_tool = webhook
    return agent_tool_update(agent_tool=entry, **fields)


@transaction.atomic
def agent_tool_update(*, agent_tool: AgentTool, **fields: Any) -> AgentTool:
    assign_writable(agent_tool, fields, AGENT_TOOL_WRITABLE_FIELDS)
    agent_tool.full_clean()
    agent_tool.save()
    return agent_tool


@transaction.atomic
def agent_tool_delete(*, agent_tool: AgentTool) -> None:
    agent_tool.delete()


WEBHOOK_TOOL_WRITABLE_FIELDS = (
    "name",
    "description",
    "parameters_schema",
    "url",
    "timeout_seconds",
    "rate_limit",
    "enabled",
)


@transaction.atomic
def webhook_tool_create(*, tenant: Tenant, secret: str, **fields: Any) -> WebhookTool:
    if not secret:
        raise ValidationError({"secret": "A signing secret is required."})
    webhook = WebhookTool(tenant=tenant)
    return webhook_tool_update(webhook_tool=webhook, secret=secret, **fields)


@transaction.atomic
def webhook_tool_update(
    *, webhook_tool: WebhookTool, secret: str | None = None, **fields: Any
) -> WebhookTool:
    assign_writable(webhook_tool, fields, WEBHOOK_TOOL_WRITABLE_FIELDS)
    if secret:
        webhook_tool.secret_encrypted = encrypt_str(secret)
    webhook_tool.full_clean()
    webhook_tool.save()
    return webhook_tool


@transaction.atomic
def webhook_tool_delete(*, webhook_tool: WebhookTool) -> None:
    webhook_tool.delete()
