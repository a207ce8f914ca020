"""Which tenant a WebSocket belongs to, from its ``?token=`` or ``?resume=`` credential."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from sessions.models import ClientToken, VoiceSession
from voice_platform.tenancy.services import hash_secret

# The scope key under which resolve_tenant leaves the client token row it found.
FOUND_TOKEN = "voice_client_token"  # noqa: S105  (a scope key, not a secret)


def connection_credentials(scope: dict[str, Any]) -> tuple[str, str]:
    """(token, resume token) from the query string; either may be empty."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return query.get("token", [""])[0], query.get("resume", [""])[0]


def resolve_tenant(scope: dict[str, Any]) -> int | None:
    token, resume = connection_credentials(scope)
    # unscoped: the credential is what tells us the tenant; nothing else is read here.
    if token:
        found = (
            ClientToken.unscoped.select_related("tenant", "agent")
            .filter(token_hash=hash_secret(token))
            .first()
        )
        if found is None:
            return None
        # The session start reads the same row: it takes it from here (one query, not two).
        scope[FOUND_TOKEN] = found
        return found.tenant_id
    if resume:
        return (
            VoiceSession.unscoped.filter(resume_token_hash=hash_secret(resume))
            .values_list("tenant_id", flat=True)
            .first()
        )
    return None
