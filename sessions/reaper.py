"""Per-process session maintenance: heartbeats for the sessions this process holds, ending
sessions whose client (or whose process) is gone for longer than the resume window, and
finishing tool calls a dead process stranded (``tools.stranded``).

One task per process (not per session). A process that dies stops its heartbeats; after
``STALE_AFTER`` its sessions count as detached, so they stop counting against the tenant's
concurrency limit and end at the end of their resume window like any dropped client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import timedelta

from channels.db import database_sync_to_async
from django.db.models import F
from django.utils import timezone

from integrations import events as integration_events
from sessions.models import VoiceSession
from tools.stranded import FIRST_SWEEP_LOOKBACK, SWEEP_LOOKBACK, tool_calls_finish_stranded
from voice_platform import periodic
from voice_platform.observability import metrics
from voice_platform.tenancy.scope import all_tenants

log = logging.getLogger(__name__)
INTERVAL = 30.0
STALE_AFTER = timedelta(seconds=3 * INTERVAL)
_reapers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
# The sessions this process holds (added by a bridge when it starts, removed when it stops).
held_sessions: set[uuid.UUID] = set()
# Whether this process swept tool calls yet: its first sweep looks back further.
_tools_swept = {"once": False}


def voice_sessions_heartbeat(*, session_ids: set[uuid.UUID]) -> int:
    if not session_ids:
        return 0
    # all_tenants: one UPDATE for every tenant's sessions held by this process.
    with all_tenants():
        return VoiceSession.objects.filter(
            pk__in=session_ids, status__in=VoiceSession.LIVE_STATUSES
        ).update(last_seen_at=timezone.now())


def voice_sessions_reap_detached() -> int:
    """Detach sessions of dead processes; end detached ones past their window."""
    now = timezone.now()
    ended = 0
    # all_tenants: a maintenance sweep over every tenant's sessions.
    with all_tenants():
        VoiceSession.objects.filter(
            status__in=VoiceSession.LIVE_STATUSES,
            client_detached_at__isnull=True,
            last_seen_at__lt=now - STALE_AFTER,
        ).update(
            client_detached_at=F("last_seen_at"),
            status=VoiceSession.Status.RECONNECTING,
            connection_channel="",
        )
        detached = VoiceSession.objects.filter(
            status__in=VoiceSession.LIVE_STATUSES, client_detached_at__isnull=False
        ).select_related("agent", "tenant")
        for session in detached:
            window = session.agent.resume_window_seconds if session.agent else 0
            if session.client_detached_at and now - session.client_detached_at > timedelta(
                seconds=window
            ):
                gone = VoiceSession.objects.filter(
                    pk=session.pk, client_detached_at=session.client_detached_at
                ).update(
                    status=VoiceSession.Status.ENDED,
                    end_reason="client_gone",
                    ended_at=now,
                    resume_token_hash="",
                    pending_resume_token_hash="",
                )
                if gone:  # no bridge holds it: its end is counted here
                    metrics.session_ended_unattached(session.tenant.slug, reason="client_gone")
                    integration_events.session_ended(
                        session_id=session.pk, tenant_id=session.tenant_id, settle=False
                    )
                ended += gone
    return ended


def maintain_once() -> None:
    """One round of this process's maintenance (the reaper runs it every INTERVAL)."""
    voice_sessions_heartbeat(session_ids=set(held_sessions))
    voice_sessions_reap_detached()
    # Tool calls whose process died before dispatching or while running them in-process.
    lookback = SWEEP_LOOKBACK if _tools_swept["once"] else FIRST_SWEEP_LOOKBACK
    tool_calls_finish_stranded(lookback=lookback)
    _tools_swept["once"] = True


async def _maintain_forever() -> None:
    while True:
        await asyncio.sleep(INTERVAL)
        try:
            await database_sync_to_async(maintain_once)()
        except Exception:  # a database hiccup must not stop the sweep
            log.exception("session maintenance failed")


def ensure_reaper() -> None:
    # Other apps' jobs (alert evaluation, usage rollup) run in a task of their own.
    periodic.ensure_running()
    loop = asyncio.get_running_loop()
    task = _reapers.get(loop)
    if task is None or task.done():
        with contextlib.suppress(RuntimeError):
            _reapers[loop] = loop.create_task(_maintain_forever(), name="session-reaper")
