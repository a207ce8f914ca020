"""Reads for sessions and tokens. Callers are inside a tenant scope."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from sessions.models import TranscriptEntry, VoiceSession
from voice_platform.tenancy.models import Tenant
from voice_platform.tenancy.services import hash_secret


def voice_session_list(
    *,
    tenant: Tenant,
    status: str | None = None,
    agent_id: int | None = None,
    end_user_id: str | None = None,
) -> QuerySet[VoiceSession]:
    qs = VoiceSession.objects.filter(tenant=tenant)
    if status:
        qs = qs.filter(status=status)
    if agent_id is not None:
        qs = qs.filter(agent_id=agent_id)
    if end_user_id:
        qs = qs.filter(end_user_id=end_user_id)
    return qs


def transcript_tail(*, session_id: Any, max_chars: int) -> list[tuple[str, str]]:
    """The newest transcript entries of a session, oldest first, as ``(role, text)``, at
    most ``max_chars`` of text in all (what seeds a fresh upstream session)."""
    tail: list[tuple[str, str]] = []
    used = 0
    entries = TranscriptEntry.objects.filter(session_id=session_id).order_by("-seq")
    for role, text in entries.values_list("role", "text").iterator(chunk_size=200):
        used += len(text)
        if used > max_chars:
            break
        tail.append((role, text))
    tail.reverse()
    return tail


def transcript_list(*, session: VoiceSession) -> QuerySet[TranscriptEntry]:
    return TranscriptEntry.objects.filter(session=session).order_by("seq")


def voice_session_metadata_for_resume(*, raw_resume_token: str) -> dict[str, Any] | None:
    """The metadata of the session this resume token resumes, or None: a transport checks
    what the session is bound to (a phone call's sid) before it takes the session over."""
    found = (
        VoiceSession.objects.filter(resume_token_hash=hash_secret(raw_resume_token))
        .values_list("metadata", flat=True)
        .first()
    )
    return dict(found) if isinstance(found, dict) else None
