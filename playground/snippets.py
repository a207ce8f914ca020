"""What the agent's admin page shows: the playground's address and the widget snippet."""

from __future__ import annotations

from django.http import HttpRequest
from django.templatetags.static import static
from django.urls import reverse

# The tenant's own backend endpoint that returns a client token (docs/clients.md#widget).
EXAMPLE_TOKEN_URL = "/voice-token"  # noqa: S105 (a path, not a secret)


def playground_url(agent_id: int) -> str:
    return reverse("playground:agent", args=[agent_id])


def widget_snippet(request: HttpRequest) -> str:
    """The HTML a tenant pastes into its site: the widget's module and its tag, pointing at
    this platform (as the admin's browser reaches it)."""
    script = request.build_absolute_uri(static("voice_agent/widget.js"))
    scheme = "wss" if request.is_secure() else "ws"
    server = f"{scheme}://{request.get_host()}/ws/v1/live"
    return (
        f'<script type="module" src="{script}"></script>\n'
        f'<voice-agent-widget token-url="{EXAMPLE_TOKEN_URL}" server="{server}">'
        "</voice-agent-widget>"
    )
