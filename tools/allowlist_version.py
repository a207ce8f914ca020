"""A per-tenant version of the tool allowlists, so a session can keep its allowlist in memory.

A session resolves its agent's allowlist once (what its Live setup declares) and admits
calls against that copy. Every saved or deleted allowlist entry or webhook tool gives the
tenant a new version; admission compares versions (one cache read) and reloads on a
mismatch, so disabling a tool or tightening a policy applies to the very next call.
Writes that bypass the ORM's signals (a raw ``UPDATE``) are still caught when the call
runs: execution reads the entry again and refuses a disabled one.

Without the cache (a Redis outage) every read answers a version no copy holds, so each
admission reloads the allowlist from the database: slower, never stale. A change saved
during the outage cannot bump the version; execution's own read still applies it.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from django.core.cache import cache

from voice_platform.outages import outage_of

log = logging.getLogger(__name__)

UNSET = "0"


def allowlist_version_key(tenant_id: int) -> str:
    """The cache key (Django's, unprefixed). Its value is a plain int, so on Redis it is
    stored as digits and can be read in a pipeline with other keys (``tools.ratelimit``)."""
    return f"tools:allowlist:v:{tenant_id}"


def allowlist_version_of(value: Any) -> str:
    return str(value or UNSET)


def allowlist_version(tenant_id: int) -> str:
    try:
        return allowlist_version_of(cache.get(allowlist_version_key(tenant_id)))
    except Exception as exc:
        if outage_of(exc) is None:
            raise
        return f"unknown:{secrets.token_hex(8)}"  # equal to no copy's: reload


def allowlist_changed(tenant_id: int) -> None:
    try:
        cache.set(allowlist_version_key(tenant_id), secrets.randbits(62) + 1, timeout=None)
    except Exception as exc:
        if outage_of(exc) is None:
            raise
        log.warning("tool allowlist version of tenant %s not bumped: %s", tenant_id, exc)
