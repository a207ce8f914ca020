"""Which tenant a WebSocket belongs to, from its ``?token=`` or ``?resume=`` credential."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from sessions.models import ClientToken, VoiceSession
from voice_platform.tenancy.services import hash_secret


def connection_credentials(scope: dict[str, Any]) -> tuple[str, str]:
    """(token, resume token) from the query string; either may be empty."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return query.get("token", [""])[0], query.get("resume", [""])[0]


def resolve_tenant(scope: dict[str, Any]) -> int | None:
    token, resume = connection_credentials(scope)
    # unscoped: the credential is what tells us the tenant; nothing else is read here.
    if token:
        return (
            ClientToken.unscoped.filter(token_hash=hash_secret(token))
            .values_list("tenant_id", flat=True)
            .first()
        )
    if resume:
        return (
            VoiceSession.unscoped.filter(resume_token_hash=hash_secret(resume))
            .values_list("tenant_id", flat=True)
            .first()
        )
    return None
