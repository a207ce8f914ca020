"""Reads for agents. Callers are inside a tenant scope."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from agents.models import Agent
from voice_platform.tenancy.models import Tenant


def agent_list(*, tenant: Tenant, enabled_only: bool = False) -> QuerySet[Agent]:
    qs = Agent.objects.filter(tenant=tenant)  # explicit, although the manager scopes too
    return qs.filter(enabled=True) if enabled_only else qs


def agent_get(*, tenant: Tenant, agent_id: int) -> Agent:
    """The tenant's agent, or 404: another tenant's agent is indistinguishable from none."""
    agent = agent_list(tenant=tenant).filter(pk=agent_id).first()
    if agent is None:
        raise Http404("No such agent.")
    return agent
