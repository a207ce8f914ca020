"""A phone call's state as its media stream sees it (docs/telephony.md, "Call states").

Written by the Media Streams consumer; read by the carrier's ``stream-ended`` request,
which answers the call's next step from it.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from telephony.models import PhoneCall


def phone_call_connected(*, call_sid: str, session_id: Any) -> bool:
    """The stream started a session: False when no ringing call has this sid."""
    updated = PhoneCall.objects.filter(call_sid=call_sid, status=PhoneCall.Status.RINGING).update(
        status=PhoneCall.Status.CONNECTED, session_id=session_id
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
