"""A phone call's state as its media stream sees it (docs/telephony.md, "Restarts").

Written by the Media Streams consumer; read by the carrier's ``stream-ended`` request,
which answers the call's next step from it.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from sessions.models import VoiceSession
from telephony.models import PhoneCall
from voice_platform.tenancy.scope import all_tenants
from voice_platform.tenancy.services import hash_secret

ENDED_STATUSES = (VoiceSession.Status.ENDED, VoiceSession.Status.FAILED)

# The reason of a connected call whose stream a server restart cut (not final).
RESTARTING = "server_restart"
# ... and once the carrier was told to connect it again (until the new stream starts).
RECONNECTING = "reconnecting"
# A call is connected again at most this many times (a stream that keeps failing).
MAX_STREAM_RESTARTS = 5


def phone_call_connected(*, call_sid: str, session_id: Any) -> bool:
    """The stream started a session: False when no ringing call has this sid."""
    updated = PhoneCall.objects.filter(call_sid=call_sid, status=PhoneCall.Status.RINGING).update(
        status=PhoneCall.Status.CONNECTED, session_id=session_id, reason=""
    )
    return updated == 1


def phone_call_refused(*, call_sid: str, reason: str) -> None:
    """The stream could not start a session (a bad credential, a limit reached meanwhile)."""
    # Only a call still ringing: a second stream of a connected call (a replayed
    # credential) is refused without touching the call in progress.
    PhoneCall.objects.filter(call_sid=call_sid, status=PhoneCall.Status.RINGING).update(
        status=PhoneCall.Status.REFUSED, reason=reason[:64], ended_at=timezone.now()
    )


def phone_call_ended(*, call_sid: str, reason: str) -> None:
    """The stream is over; the first reason recorded stays."""
    PhoneCall.objects.filter(call_sid=call_sid, ended_at__isnull=True).update(
        status=PhoneCall.Status.ENDED, reason=reason[:64], ended_at=timezone.now()
    )


def phone_call_restarting(*, call_sid: str) -> None:
    """The server process holding the stream is stopping: the call is not over. The
    carrier's ``stream-ended`` request then connects it again, resuming the session."""
    PhoneCall.objects.filter(call_sid=call_sid, status=PhoneCall.Status.CONNECTED).update(
        reason=RESTARTING
    )


def phone_call_retry(*, call_sid: str) -> None:
    """A ringing call's stream reached a process that is stopping: still ringing, and the
    carrier's ``stream-ended`` request answers it again on a running process."""
    PhoneCall.objects.filter(call_sid=call_sid, status=PhoneCall.Status.RINGING).update(
        reason=RESTARTING
    )


def phone_call_new_nonce(*, call: PhoneCall) -> str:
    """A nonce for the answer being made (it goes into its ``<Connect action>`` URL);
    the one before it stops working."""
    nonce = secrets.token_urlsafe(16)
    PhoneCall.objects.filter(pk=call.pk).update(answer_nonce_hash=hash_secret(nonce))
    return nonce


def phone_call_nonce_matches(*, call: PhoneCall, nonce: str) -> bool:
    return bool(nonce and call.answer_nonce_hash) and secrets.compare_digest(
        call.answer_nonce_hash, hash_secret(nonce)
    )


def phone_call_claim_restart(*, call_id: int) -> bool:
    """Take a cut call's reconnection: False when it was taken (by a concurrent request),
    the call is no longer waiting for one, or it was connected again too often."""
    return bool(
        PhoneCall.objects.filter(
            Q(status=PhoneCall.Status.RINGING, reason=RESTARTING)
            | Q(status=PhoneCall.Status.CONNECTED, reason__in=("", RESTARTING, RECONNECTING)),
            pk=call_id,
            stream_restarts__lt=MAX_STREAM_RESTARTS,
        ).update(reason=RECONNECTING, stream_restarts=F("stream_restarts") + 1)
    )


def phone_call_resumed(*, call_sid: str, session_id: Any) -> bool:
    """A new stream of a restarted call took its session over."""
    updated = PhoneCall.objects.filter(
        call_sid=call_sid, status=PhoneCall.Status.CONNECTED, session_id=session_id
    ).update(reason="")
    return updated == 1


def phone_call_sweep() -> int:
    """Calls left without a final state: connected to a session that has ended (its stream
    was cut by a restart and the caller hung up before the carrier reconnected it), or
    ringing past their credential's life (the carrier never opened the stream, nor asked
    what next). Each is ended with its session's end reason, or ``stream_failed``."""
    now = timezone.now()
    swept = 0
    # all tenants: a maintenance sweep of the platform's own bookkeeping.
    with all_tenants():
        over = PhoneCall.objects.filter(
            status=PhoneCall.Status.CONNECTED, session__status__in=ENDED_STATUSES
        ).select_related("session")
        for call in over:
            session = call.session
            swept += PhoneCall.objects.filter(pk=call.pk, ended_at__isnull=True).update(
                status=PhoneCall.Status.ENDED,
                reason=(session.end_reason if session else "") or "ended",
                ended_at=(session.ended_at if session else None) or now,
            )
        stale = now - timedelta(seconds=settings.PHONE_TOKEN_SECONDS + 60)
        swept += PhoneCall.objects.filter(
            status=PhoneCall.Status.RINGING, started_at__lt=stale
        ).update(status=PhoneCall.Status.ENDED, reason="stream_failed", ended_at=now)
    return swept
