"""The deployment's concurrent-session cap, shared fairly between tenants.

A Gemini project has one concurrent-session quota for every tenant on the platform's key
(``GEMINI_API_KEY``; a tenant with its own key uses its own project, and neither counts nor
is held here). With ``LIVE_MAX_SESSIONS`` set, the platform holds the live sessions on its
key, across the deployment (every process: counted in the database), to that cap, so the
quota is never overrun into the model service's own refusals, and no tenant can take it
all: each tenant's
``guaranteed_sessions`` are reserved for it. A session is admitted when its tenant is under
its guarantee, or when the sessions live plus the reserves other tenants have not used yet
leave room under the cap. Guarantees add up to at most the cap (checked when a tenant is
saved), so every tenant can always reach its guarantee, whatever the others do; what is not
reserved is shared first come, first served. Each tenant's own ``max_concurrent_sessions``
applies as well.

Admissions are serialised by one transaction-scoped advisory lock (PostgreSQL), taken only
when the cap is set; SQLite (one writer) needs none.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import connection
from django.db.models import Count, Sum

from voice_platform.tenancy.models import Tenant

# pg_advisory_xact_lock's key: any constant no other code of ours locks.
_LOCK_KEY = 0x766F6963  # "voic"


def capacity_cap() -> int:
    """The deployment's cap on live sessions; 0 when there is none."""
    return int(settings.LIVE_MAX_SESSIONS)


def guarantees_total(*, excluding_tenant: int | None = None) -> int:
    """The sessions reserved by tenants' guarantees on the platform's key (all such tenants
    but one, if given)."""
    tenants = Tenant.objects.filter(gemini_api_key_encrypted="")
    if excluding_tenant is not None:
        tenants = tenants.exclude(pk=excluding_tenant)
    return int(tenants.aggregate(total=Sum("guaranteed_sessions"))["total"] or 0)


def capacity_admits(*, tenant: Tenant, excluding: uuid.UUID | None = None) -> bool:
    """Whether one more live session of ``tenant`` fits (call inside the opening
    transaction; ``excluding``: a session being resumed, not counted as live)."""
    cap = capacity_cap()
    if cap <= 0 or tenant.has_own_gemini_key:  # its own key: its own project's quota
        return True
    _lock()
    from sessions.models import VoiceSession

    live = VoiceSession.unscoped.filter(
        status__in=VoiceSession.LIVE_STATUSES,
        client_detached_at__isnull=True,
        tenant__gemini_api_key_encrypted="",  # sessions on the platform's key only
    )
    if excluding is not None:
        live = live.exclude(pk=excluding)
    per_tenant = dict(live.values_list("tenant_id").annotate(n=Count("pk")).order_by())
    own = per_tenant.get(tenant.pk, 0)
    if own < tenant.guaranteed_sessions:
        return True
    reserved = Tenant.objects.filter(
        guaranteed_sessions__gt=0, gemini_api_key_encrypted=""
    ).exclude(pk=tenant.pk)
    unused = sum(
        max(0, guaranteed - per_tenant.get(pk, 0))
        for pk, guaranteed in reserved.values_list("pk", "guaranteed_sessions")
    )
    return bool(sum(per_tenant.values()) + unused < cap)


def _lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
