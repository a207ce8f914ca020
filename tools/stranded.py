"""Finishing calls nobody will finish: the sweep behind "every tool call reaches a final state".

An accepted call is normally finished by its runner (outcome or timeout) or by the session
waiting for it (``timeout``, ``cancelled``). Two deaths leave it unfinished with neither:

- the process that admitted it died between the commit and the ``on_commit`` dispatch (or
  its in-process pool died with it): the call stays ``queued`` and no runner will ever see it;
- the process running it in-process died mid-call (a Celery worker's death is covered by
  the redelivery, ``tools.execution._finish_orphan``): it stays ``running``.

Past its timeout and a grace, no live runner or session can still finish such a call, so the
sweep does: ``queued`` as ``failed`` (it never started, so it had no effect), ``running`` as
``timeout`` (it may have had its effect). Both writes are conditional, so a runner that is
alive after all wins, and a late Celery delivery of a swept call claims nothing and runs
nothing. The session, if it lives on in another process, is woken like for any outcome.
Every server process sweeps (``sessions.reaper``); the conditional writes make that safe.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from tools.execution import ORPHAN_ERROR
from tools.models import ToolCallRecord
from tools.notify import tool_result_notify
from tools.outcome import UNFINISHED, tool_call_finish_early
from voice_platform.tenancy.models import Tenant
from voice_platform.tenancy.scope import all_tenants

logger = logging.getLogger(__name__)

Status = ToolCallRecord.Status
# Past a call's timeout, its runner and its session have both given up on it by then
# (the Celery orphan path waits ORPHAN_GRACE_SECONDS, 5 s): a generous margin over both.
STRANDED_GRACE = timedelta(seconds=30)
NEVER_STARTED_ERROR = (
    "the call never started: the process that accepted it stopped before handing it to a "
    "tool runner, or no runner took it within its timeout"
)
BATCH = 500
# A call only the sweep can finish was admitted or claimed by the process that died, so it is
# due by its creation + TOOL_TIMEOUT_MAX (120 s) + the grace (a Celery worker's late claim is
# the redelivery's to finish); every server process sweeps every 30 s, so the routine sweep
# looks back 10 minutes, and a process's first sweep a day, for calls stranded while no
# server ran.
SWEEP_LOOKBACK = timedelta(minutes=10)
FIRST_SWEEP_LOOKBACK = timedelta(days=1)


def tool_call_stranded_due(record: ToolCallRecord) -> datetime:
    """When an unfinished call counts as stranded: its timeout and a grace after it began."""
    began = record.started_at or record.queued_at or record.created_at
    return began + timedelta(seconds=record.timeout_seconds) + STRANDED_GRACE


def tool_calls_finish_stranded(
    *, now: datetime | None = None, lookback: timedelta = SWEEP_LOOKBACK
) -> int:
    """Finish every call left unfinished past its timeout and a grace, among those created
    within ``lookback``; how many it finished."""
    now = now or timezone.now()
    finished = 0
    # all_tenants: a maintenance sweep over every tenant's calls, like the session reaper.
    with all_tenants():
        # Through the (tenant, created_at) index, one range per tenant: the audit table keeps
        # status out of every index so that a call's two updates stay HOT (docs/performance.md).
        tenants = list(Tenant.objects.values_list("pk", flat=True))
        candidates = ToolCallRecord.objects.filter(
            tenant_id__in=tenants,
            created_at__gte=now - lookback,
            created_at__lt=now - STRANDED_GRACE,  # nothing younger can be stranded yet
            status__in=UNFINISHED,
        ).order_by("created_at")[:BATCH]
        for record in candidates:
            if tool_call_stranded_due(record) > now:
                continue
            was = record.status
            if was == Status.QUEUED:  # never started: it had no effect
                changed = tool_call_finish_early(
                    record=record, status="failed", error=NEVER_STARTED_ERROR
                )
            else:  # started: it may have had its effect
                changed = tool_call_finish_early(
                    record=record, status="timeout", error=ORPHAN_ERROR
                )
            if changed:
                finished += 1
                logger.warning(
                    "tool call %s (%s) stranded %s; finished %s", record.pk, record.tool_name,
                    was, record.status,
                )  # fmt: skip
                tool_result_notify(record=record)
    return finished
