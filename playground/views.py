"""The playground page and its token endpoint. Both run behind the admin's door
(``admin.site.admin_view``: signed-in staff, tenant scope entered), see urls.py."""

from __future__ import annotations

import uuid

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from playground.selectors import playground_agent_get
from playground.services import playground_token_issue

# The admin URL of a stored session, with this id standing for the real one in the page.
_SESSION_PLACEHOLDER = uuid.UUID(int=0)


@require_GET
def agent_playground(request: HttpRequest, agent_id: int) -> HttpResponse:
    agent = playground_agent_get(request=request, agent_id=agent_id)
    context = {
        **admin.site.each_context(request),  # the admin's header, theme and nav
        "agent": agent,
        "title": f"Try {agent.name}",
        "token_url": reverse("playground:agent-token", args=[agent.pk]),
        "session_url_template": reverse(
            "admin:voice_sessions_voicesession_change", args=[_SESSION_PLACEHOLDER]
        ).replace(str(_SESSION_PLACEHOLDER), "{id}"),
        "agent_admin_url": reverse("admin:agents_agent_change", args=[agent.pk]),
    }
    return render(request, "playground/agent.html", context)


@require_POST
def agent_token(request: HttpRequest, agent_id: int) -> JsonResponse:
    """A fresh one-use client token for the page (CSRF-protected POST, no API key)."""
    agent = playground_agent_get(request=request, agent_id=agent_id)
    issued = playground_token_issue(agent=agent, user=request.user)
    scheme = "wss" if request.is_secure() else "ws"
    return JsonResponse(
        {
            "token": issued.raw,
            "expires_at": issued.token.expires_at.isoformat(),
            "websocket_url": f"{scheme}://{request.get_host()}/ws/v1/live?token={issued.raw}",
        },
        status=201,
    )
