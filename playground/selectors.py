"""Which agent a playground request may use."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from agents.models import Agent


def playground_agent_get(*, request: HttpRequest, agent_id: int) -> Agent:
    """The agent, read through the admin's scoped queryset: another tenant's agent is a 404
    exactly like a missing one. Trying an agent opens a billed session, so it needs the
    right to change the agent (tenant admins, superusers), not only to view it."""
    model_admin = admin.site.get_model_admin(Agent)
    agent = model_admin.get_queryset(request).filter(pk=agent_id).first()
    if agent is None:
        raise Http404("Not found.")
    if not model_admin.has_change_permission(request, agent):
        raise PermissionDenied("Trying an agent needs the right to change it.")
    return agent
