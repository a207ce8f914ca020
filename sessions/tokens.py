"""Ephemeral client tokens: issue, list, revoke, and consume one use atomically."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import F, QuerySet
from django.utils import timezone

from agents.models import Agent
from sessions.models import ClientToken
from voice_platform.tenancy.models import ApiKey, Tenant
from voice_platform.tenancy.services import hash_secret

TOKEN_PREFIX = "ct_"  # noqa: S105 (a public marker, not a secret)
MAX_EXPIRE_SECONDS = 3600
MAX_USES = 10
MAX_METADATA_BYTES = 4096


@dataclass(frozen=True)
class IssuedClientToken:
    token: ClientToken
    raw: str  # returned once to the tenant's backend, never stored


def client_token_issue(
    *,
    tenant: Tenant,
    agent: Agent,
    end_user_id: str,
    expire_seconds: int = 1800,
    new_session_expire_seconds: int = 60,
    uses: int = 1,
    metadata: dict[str, Any] | None = None,
    created_by: ApiKey | None = None,
) -> IssuedClientToken:
    metadata = metadata or {}
    errors: dict[str, str] = {}
    if not 1 <= expire_seconds <= MAX_EXPIRE_SECONDS:
        errors["expire_seconds"] = f"Must be between 1 and {MAX_EXPIRE_SECONDS}."
    if not 1 <= new_session_expire_seconds <= expire_seconds:
        errors["new_session_expire_seconds"] = "Must be between 1 and expire_seconds."
    if not 1 <= uses <= MAX_USES:
        errors["uses"] = f"Must be between 1 and {MAX_USES}."
    if len(json.dumps(metadata, separators=(",", ":")).encode()) > MAX_METADATA_BYTES:
        errors["metadata"] = f"Must be at most {MAX_METADATA_BYTES} bytes as JSON."
    if errors:
        raise ValidationError(errors)
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)  # 256 bits of entropy
    now = timezone.now()
    token = ClientToken.objects.create(
        tenant=tenant,
        agent=agent,
        end_user_id=end_user_id,
        prefix=raw[:11],
        token_hash=hash_secret(raw),
        metadata=metadata,
        uses=uses,
        uses_left=uses,
        expires_at=now + timedelta(seconds=expire_seconds),
        new_session_expires_at=now + timedelta(seconds=new_session_expire_seconds),
        created_by=created_by,
    )
    return IssuedClientToken(token=token, raw=raw)


def client_token_list_live(*, tenant: Tenant) -> QuerySet[ClientToken]:
    """Tokens that could still open a session."""
    now = timezone.now()
    return ClientToken.objects.filter(
        tenant=tenant,
        revoked_at__isnull=True,
        uses_left__gt=0,
        expires_at__gt=now,
        new_session_expires_at__gt=now,
    ).select_related("agent")


def client_token_revoke(*, token: ClientToken) -> ClientToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def client_token_find(*, raw: str, with_owners: bool = False) -> ClientToken | None:
    """The token with this value in the current scope, usable or not; ``with_owners``
    fetches its tenant and agent in the same query (a session start needs both)."""
    if not raw.startswith(TOKEN_PREFIX):
        return None
    tokens = ClientToken.objects.filter(token_hash=hash_secret(raw))
    if with_owners:
        tokens = tokens.select_related("tenant", "agent")
    return tokens.first()


def client_token_consume(*, token: ClientToken) -> bool:
    """Take one use, atomically: of two racing connections for the last use, one wins.

    A single conditional UPDATE, so the database arbitrates (no read-modify-write race).
    """
    now = timezone.now()
    # One statement is atomic by itself (no savepoint inside the caller's transaction).
    taken = ClientToken.objects.filter(
        pk=token.pk,
        revoked_at__isnull=True,
        uses_left__gt=0,
        expires_at__gt=now,
        new_session_expires_at__gt=now,
    ).update(uses_left=F("uses_left") - 1)
    return taken == 1
