"""A per-tenant version of the tool allowlists, so a session can keep its allowlist in memory.

A session resolves its agent's allowlist once (what its Live setup declares) and admits
calls against that copy. Every saved or deleted allowlist entry or webhook tool gives the
tenant a new version; admission compares versions (one cache read) and reloads on a
mismatch, so disabling a tool or tightening a policy applies to the very next call.
Writes that bypass the ORM's signals (a raw ``UPDATE``) are still caught when the call
runs: execution reads the entry again and refuses a disabled one.
"""

from __future__ import annotations

import uuid

from django.core.cache import cache

UNSET = "0"


def _key(tenant_id: int) -> str:
    return f"tools:allowlist:v:{tenant_id}"


def allowlist_version(tenant_id: int) -> str:
    return str(cache.get(_key(tenant_id)) or UNSET)


def allowlist_changed(tenant_id: int) -> None:
    cache.set(_key(tenant_id), uuid.uuid4().hex, timeout=None)
