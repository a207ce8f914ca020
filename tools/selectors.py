"""Reads for tools. Callers are inside a tenant scope; every read names the tenant too."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Max, QuerySet
from django.http import Http404

from agents.models import Agent
from tools.models import AgentTool, ToolCallRecord, WebhookTool
from voice_platform.tenancy.models import Tenant


def agent_tool_list(*, tenant: Tenant, agent: Agent) -> QuerySet[AgentTool]:
    return AgentTool.objects.filter(tenant=tenant, agent=agent).select_related(
        "tool", "webhook_tool"
    )


def agent_tool_get(*, tenant: Tenant, agent: Agent, agent_tool_id: int) -> AgentTool:
    entry = agent_tool_list(tenant=tenant, agent=agent).filter(pk=agent_tool_id).first()
    if entry is None:
        raise Http404("No such tool on this agent.")
    return entry


def webhook_tool_list(*, tenant: Tenant) -> QuerySet[WebhookTool]:
    return WebhookTool.objects.filter(tenant=tenant)


def webhook_tool_get(*, tenant: Tenant, webhook_tool_id: int) -> WebhookTool:
    webhook = webhook_tool_list(tenant=tenant).filter(pk=webhook_tool_id).first()
    if webhook is None:
        raise Http404("No such webhook tool.")
    return webhook


def tool_call_list(
    *,
    tenant: Tenant,
    agent_id: int | None = None,
    tool_name: str | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> QuerySet[ToolCallRecord]:
    """The tenant's audit records, newest first, filtered like the admin list."""
    qs = ToolCallRecord.objects.filter(tenant=tenant)
    if agent_id is not None:
        qs = qs.filter(agent_id=agent_id)
    if tool_name:
        qs = qs.filter(tool_name=tool_name)
    if status:
        qs = qs.filter(status=status)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    return qs.order_by("-created_at", "-id")


def tool_call_next_turn(*, session_id: Any) -> int:
    """The first conversation position no tool call of this session has used: a session
    resumed by another connection counts its new turns from here, so a new request never
    takes an earlier one's key (``tools.idempotency``)."""
    last = ToolCallRecord.objects.filter(session_ref=session_id).aggregate(last=Max("turn"))
    return 0 if last["last"] is None else int(last["last"]) + 1
