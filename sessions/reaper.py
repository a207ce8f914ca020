"""Ends sessions whose client left without "close" and did not come back in time.

One task per process (not per session), every ``INTERVAL`` seconds; the resume path also
checks the window itself, so the reaper only makes the end visible sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from channels.db import database_sync_to_async
from django.utils import timezone

from sessions.models import VoiceSession
from voice_platform.tenancy.scope import all_tenants

log = logging.getLogger(__name__)
INTERVAL = 30.0
_reapers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


def voice_sessions_reap_detached() -> int:
    """End every detached session whose resume window has passed. Returns how many."""
    now = timezone.now()
    ended = 0
    # all_tenants: a maintenance sweep over every tenant's sessions, ending only expired ones.
    with all_tenants():
        detached = VoiceSession.objects.filter(
            status__in=VoiceSession.LIVE_STATUSES, client_detached_at__isnull=False
        ).select_related("agent")
        for session in detached:
            window = session.agent.resume_window_seconds if session.agent else 0
            if session.client_detached_at and now - session.client_detached_at > timedelta(
                seconds=window
            ):
                ended += VoiceSession.objects.filter(
                    pk=session.pk, client_detached_at=session.client_detached_at
                ).update(
                    status=VoiceSession.Status.ENDED,
                    end_reason="client_gone",
                    ended_at=now,
                    resume_token_hash="",
                )
    return ended


async def _reap_forever() -> None:
    while True:
        await asyncio.sleep(INTERVAL)
        try:
            await database_sync_to_async(voice_sessions_reap_detached)()
        except Exception:  # a database hiccup must not stop the sweep
            log.exception("reaping detached sessions failed")


def ensure_reaper() -> None:
    loop = asyncio.get_running_loop()
    task = _reapers.get(loop)
    if task is None or task.done():
        with contextlib.suppress(RuntimeError):
            _reapers[loop] = loop.create_task(_reap_forever(), name="session-reaper")
