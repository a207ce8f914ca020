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
reserved is shared first come, first served; the cap itself is never exceeded, even if
guarantees were misconfigured past it. A call whose client is away (a dropped network, a
server restart) keeps its slot until it resumes or its resume window passes, so its resume
is never refused for capacity. Each tenant's own ``max_concurrent_sessions`` applies as
well.

Admissions are serialised by one transaction-scoped advisory lock (PostgreSQL), taken only
when the cap is set; SQLite (one writer) needs none.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.db.models import Count, Sum

from voice_platform.tenancy.models import Tenant

log = logging.getLogger(__name__)
# pg_advisory_xact_lock's key: any constant no other code of ours locks.
_LOCK_KEY = 0x766F6963  # "voic"


def capacity_cap() -> int:
    """The deployment's cap on live sessions; 0 when there is none."""
    return int(settings.LIVE_MAX_SESSIONS)


def guarantees_total(*, excluding_tenant: int | None = None) -> int:
    """The sessions reserved by active tenants' guarantees on the platform's key (all such
    tenants but one, if given)."""
    tenants = Tenant.objects.filter(gemini_api_key_encrypted="", status=Tenant.Status.ACTIVE)
    if excluding_tenant is not None:
        tenants = tenants.exclude(pk=excluding_tenant)
    return int(tenants.aggregate(total=Sum("guaranteed_sessions"))["total"] or 0)


def capacity_admits(*, tenant: Tenant) -> bool:
    """Whether one more live session of ``tenant`` fits (call inside the opening
    transaction). A resume needs no check: its session kept its slot."""
    cap = capacity_cap()
    if cap <= 0 or tenant.has_own_gemini_key:  # its own key: its own project's quota
        return True
    _lock()
    from sessions.models import VoiceSession

    # A call whose client is away (a dropped network, a server restart) keeps its slot until
    # it resumes or its resume window passes: its resume must never find the cap full.
    live = VoiceSession.unscoped.filter(
        status__in=VoiceSession.LIVE_STATUSES,
        tenant__gemini_api_key_encrypted="",  # sessions on the platform's key only
    )
    per_tenant = dict(live.values_list("tenant_id").annotate(n=Count("pk")).order_by())
    total = sum(per_tenant.values())
    if total >= cap:  # the quota itself: never past it, whatever the guarantees say
        return False
    own = per_tenant.get(tenant.pk, 0)
    if own < tenant.guaranteed_sessions:
        # With guarantees adding up to at most the cap, a guarantee always fits here: live
        # sessions plus every unused reservation never exceed the cap (admissions keep it so).
        return True
    reserved = dict(
        Tenant.objects.filter(
            guaranteed_sessions__gt=0, gemini_api_key_encrypted="", status=Tenant.Status.ACTIVE
        ).values_list("pk", "guaranteed_sessions")
    )
    if sum(reserved.values()) > cap:
        log.warning(
            "tenants' guaranteed_sessions add up to %d, over LIVE_MAX_SESSIONS (%d): not every "
            "guarantee can be kept",
            sum(reserved.values()),
            cap,
        )
    unused = sum(
        max(0, guaranteed - per_tenant.get(pk, 0))
        for pk, guaranteed in reserved.items()
        if pk != tenant.pk
    )
    return bool(total + unused < cap)


def _lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
