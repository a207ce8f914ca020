"""Writes for tenants, memberships and API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from voice_platform.crypto import decrypt_str, encrypt_str
from voice_platform.tenancy.models import ApiKey, Membership, Tenant
from voice_platform.tenancy.scope import tenant_scope

API_KEY_PREFIX = "vpk_"
# 48 random bits: prefixes are unique across all tenants, so collisions must be negligible.
API_KEY_PREFIX_LEN = len(API_KEY_PREFIX) + 12
# last_used_at is advisory; writing it on every request would make every API call a write.
LAST_USED_GRANULARITY = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    raw_key: str  # shown once, never stored


class ApiKeyInvalid(Exception):
    """Unknown, malformed or revoked key."""


class TenantSuspended(Exception):
    """The key is valid but its tenant is suspended."""


def hash_secret(raw: str) -> str:
    """SHA-256 is enough for high-entropy machine secrets (no password stretching needed)."""
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def tenant_create(*, name: str, slug: str, max_concurrent_sessions: int = 10) -> Tenant:
    tenant = Tenant(name=name, slug=slug, max_concurrent_sessions=max_concurrent_sessions)
    tenant.full_clean()
    tenant.save()
    return tenant


def tenant_set_gemini_key(*, tenant: Tenant, api_key: str) -> Tenant:
    """Store (or with an empty string, clear) the tenant's own Gemini key, encrypted."""
    tenant.gemini_api_key_encrypted = encrypt_str(api_key) if api_key else ""
    tenant.save(update_fields=["gemini_api_key_encrypted"])
    return tenant


def tenant_gemini_key(*, tenant: Tenant) -> str:
    """The tenant's own Gemini key in plain text, or "" when it uses the platform key."""
    if not tenant.gemini_api_key_encrypted:
        return ""
    return decrypt_str(tenant.gemini_api_key_encrypted)


def membership_create(
    *, user: AbstractBaseUser, tenant: Tenant, role: str = Membership.Role.ADMIN
) -> Membership:
    membership, _ = Membership.objects.update_or_create(
        user=user, tenant=tenant, defaults={"role": role}
    )
    return membership


@transaction.atomic
def api_key_create(*, tenant: Tenant, name: str) -> IssuedApiKey:
    prefix = API_KEY_PREFIX + secrets.token_hex(6)
    raw = f"{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey(tenant=tenant, name=name, prefix=prefix, key_hash=hash_secret(raw))
    # Unique checks read through the scoped manager: validate inside the key's own tenant.
    with tenant_scope(tenant.pk):
        api_key.full_clean()
    api_key.save()
    return IssuedApiKey(api_key=api_key, raw_key=raw)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_authenticate(*, raw_key: str) -> ApiKey:
    """Resolve a presented key to its ApiKey, or raise ApiKeyInvalid / TenantSuspended."""
    # vpk_ + 12 hex, then "_" and the secret (whose URL-safe alphabet may contain "_" too).
    prefix = raw_key[:API_KEY_PREFIX_LEN]
    if (
        not prefix.startswith(API_KEY_PREFIX)
        or raw_key[API_KEY_PREFIX_LEN : API_KEY_PREFIX_LEN + 1] != "_"
    ):
        raise ApiKeyInvalid
    # unscoped: authentication is what finds the tenant; there is no scope yet.
    api_key = ApiKey.unscoped.select_related("tenant").filter(prefix=prefix).first()
    if api_key is None or not hmac.compare_digest(api_key.key_hash, hash_secret(raw_key)):
        raise ApiKeyInvalid
    if api_key.is_revoked:
        raise ApiKeyInvalid
    if not api_key.tenant.is_active:
        raise TenantSuspended
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_GRANULARITY:
        ApiKey.unscoped.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key
