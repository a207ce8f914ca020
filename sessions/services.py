"""Session lifecycle: open with a client token, resume with a resume token, persist, end.

All functions run inside the connection's tenant scope (entered by the ASGI middleware).
They are synchronous; the consumer calls them through ``database_sync_to_async``.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agents.models import Agent
from integrations import events as integration_events
from sessions.capacity import capacity_admits
from sessions.client_messages import storable_text
from sessions.close_codes import CloseCode
from sessions.models import (
    FIRST_RESPONSE_SAMPLES,
    RECONNECT_LOG_ENTRIES,
    TURN_TIMINGS_KEPT,
    ClientToken,
    TranscriptEntry,
    VoiceSession,
)
from sessions.notify import notify_end
from sessions.tokens import client_token_consume, client_token_find
from sessions.turn_timing import histogram_add
from voice_platform.observability import metrics
from voice_platform.tenancy.models import Tenant
from voice_platform.tenancy.services import hash_secret

RESUME_PREFIX = "rt_"
# Gemini keeps a resumption handle valid for 2 hours after the session's last use.
HANDLE_VALIDITY = timedelta(hours=2)


class SessionRefused(Exception):
    def __init__(self, code: CloseCode, reason: str, *, capacity: bool = False) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        # The deployment's session cap (sessions/capacity.py): the client may retry later.
        self.capacity = capacity


@dataclass
class SessionGrant:
    session: VoiceSession
    agent: Agent
    tenant: Tenant
    resume_token: str
    resumed: bool
    superseded_channel: str = ""


@dataclass
class SessionProgress:
    """What the bridge accumulated in memory since the last flush."""

    counters: dict[str, int] = field(default_factory=dict)
    first_response_ms: list[float] = field(default_factory=list)
    transcript: list[tuple[str, str, str, datetime]] = field(default_factory=list)
    # Upstream reconnects since the last flush: {"at", "cause", "gap_ms", ...} each.
    reconnects: list[dict[str, Any]] = field(default_factory=list)
    # Turns timed since the last flush (``TurnTiming.as_dict()`` each).
    turn_timings: list[dict[str, Any]] = field(default_factory=list)


COUNTER_FIELDS = (
    "client_frames_in",
    "client_bytes_in",
    "model_frames_out",
    "model_bytes_out",
    "dropped_audio_frames",
    "turns",
    "interruptions",
    "tool_calls",
    "errors",
    "reconnects",
    "prompt_tokens",
    "response_tokens",
    "total_tokens",
)


def origin_allowed(*, agent: Agent, origin: str | None) -> bool:
    """No Origin (non-browser client), an empty allowlist, the agent's list, or our own host."""
    if not origin:
        return True
    if not agent.allowed_origins or origin in agent.allowed_origins:
        return True
    host = urlsplit(origin).hostname or ""
    return any(
        allowed == "*" or host == allowed or (allowed.startswith(".") and host.endswith(allowed))
        for allowed in settings.ALLOWED_HOSTS
    )


def _new_resume_token() -> tuple[str, str]:
    raw = RESUME_PREFIX + secrets.token_urlsafe(32)
    return raw, hash_secret(raw)


def _check_access(*, tenant: Tenant, agent: Agent | None, origin: str | None) -> Agent:
    if not tenant.is_active:
        raise SessionRefused(CloseCode.FORBIDDEN, "tenant_suspended")
    if agent is None or not agent.enabled:
        raise SessionRefused(CloseCode.FORBIDDEN, "agent_disabled")
    if not origin_allowed(agent=agent, origin=origin):
        raise SessionRefused(CloseCode.FORBIDDEN, "origin_not_allowed")
    return agent


def _check_tenant_limit(*, tenant: Tenant, excluding: uuid.UUID | None = None) -> None:
    """Call inside a transaction holding the tenant row lock. ``excluding``: a session being
    resumed, whose slot under the deployment's cap it kept while its client was away."""
    live = VoiceSession.objects.filter(
        tenant=tenant, status__in=VoiceSession.LIVE_STATUSES, client_detached_at__isnull=True
    )
    if excluding is not None:
        live = live.exclude(pk=excluding)
    if live.count() >= tenant.max_concurrent_sessions:
        raise SessionRefused(CloseCode.TENANT_LIMIT, "tenant_session_limit")
    if excluding is None and not capacity_admits(tenant=tenant):
        raise SessionRefused(CloseCode.BUSY, "platform_at_capacity", capacity=True)


def voice_session_admission(*, tenant: Tenant, agent: Agent | None) -> str | None:
    """Why a new session of ``agent`` would be refused now, or None: a pre-check for a door
    that must answer before the session opens (a phone call's TwiML). Advisory: the open
    itself checks again under the tenant lock."""
    try:
        _check_access(tenant=tenant, agent=agent, origin=None)
        _check_tenant_limit(tenant=tenant)
    except SessionRefused as refusal:
        return refusal.reason
    return None


def voice_session_open(
    *, raw_token: str, origin: str | None, channel_name: str, found: ClientToken | None = None
) -> SessionGrant:
    """``found``: the token's row with its tenant and agent, already read for this
    connection (by the credential's lookup); it must be the row of ``raw_token``."""
    if found is not None and secrets.compare_digest(found.token_hash, hash_secret(raw_token)):
        token: ClientToken | None = found
    else:
        token = client_token_find(raw=raw_token, with_owners=True)
    if token is None:
        raise SessionRefused(CloseCode.UNAUTHENTICATED, "invalid_token")
    tenant = token.tenant
    # Joined rows bypass the scope: an agent of another tenant is no agent of this one.
    agent = token.agent if token.agent.tenant_id == tenant.pk else None
    agent = _check_access(tenant=tenant, agent=agent, origin=origin)
    raw_resume, resume_hash = _new_resume_token()
    with transaction.atomic():
        # The tenant row lock serialises concurrent opens of one tenant: the limit holds.
        # NO KEY: inserts referencing the tenant (FOR KEY SHARE) must not deadlock with it.
        Tenant.objects.select_for_update(no_key=True).filter(pk=tenant.pk).first()
        _check_tenant_limit(tenant=tenant)
        if not client_token_consume(token=token):
            raise SessionRefused(CloseCode.UNAUTHENTICATED, "token_expired_or_used")
        session = VoiceSession.objects.create(
            tenant=tenant,
            agent=agent,
            client_token=token,
            end_user_id=token.end_user_id,
            metadata=token.metadata,
            connection_channel=channel_name,
            resume_token_hash=resume_hash,
            last_seen_at=timezone.now(),
        )
    integration_events.session_started(session)
    return SessionGrant(
        session=session, agent=agent, tenant=tenant, resume_token=raw_resume, resumed=False
    )


def voice_session_resume(
    *, raw_resume_token: str, origin: str | None, channel_name: str
) -> SessionGrant:
    if not raw_resume_token.startswith(RESUME_PREFIX):
        raise SessionRefused(CloseCode.UNAUTHENTICATED, "invalid_resume_token")
    session = VoiceSession.objects.filter(resume_token_hash=hash_secret(raw_resume_token)).first()
    if session is None or not session.is_live:
        raise SessionRefused(CloseCode.UNAUTHENTICATED, "invalid_resume_token")
    tenant = Tenant.objects.get(pk=session.tenant_id)
    agent = Agent.objects.filter(pk=session.agent_id).first()
    now = timezone.now()
    if agent is not None and session.client_detached_at is not None:
        window = timedelta(seconds=agent.resume_window_seconds)
        if now - session.client_detached_at > min(window, HANDLE_VALIDITY):
            voice_session_end(
                session_id=session.pk,
                channel_name=None,
                status=VoiceSession.Status.ENDED,
                reason="client_gone",
                progress=None,
            )
            raise SessionRefused(CloseCode.UNAUTHENTICATED, "resume_window_passed")
    agent = _check_access(tenant=tenant, agent=agent, origin=origin)
    raw_resume, resume_hash = _new_resume_token()
    with transaction.atomic():
        Tenant.objects.select_for_update(no_key=True).filter(pk=tenant.pk).first()
        locked = VoiceSession.objects.select_for_update(no_key=True).get(pk=session.pk)
        current = secrets.compare_digest(locked.resume_token_hash, hash_secret(raw_resume_token))
        if not current or not locked.is_live:
            # Another connection rotated it first: the old token has stopped working.
            raise SessionRefused(CloseCode.UNAUTHENTICATED, "invalid_resume_token")
        if locked.client_detached_at is not None:
            _check_tenant_limit(tenant=tenant, excluding=locked.pk)
        previous = locked.connection_channel
        locked.connection_channel = channel_name
        locked.pending_resume_token_hash = resume_hash
        locked.client_detached_at = None
        locked.last_seen_at = now
        locked.save(
            update_fields=[
                "connection_channel", "pending_resume_token_hash", "client_detached_at",
                "last_seen_at",
            ]
        )  # fmt: skip
    return SessionGrant(
        session=locked,
        agent=agent,
        tenant=tenant,
        resume_token=raw_resume,
        resumed=True,
        superseded_channel=previous if previous != channel_name else "",
    )


def _owned(session_id: uuid.UUID, channel_name: str | None) -> Any:
    qs = VoiceSession.objects.filter(pk=session_id)
    return qs if channel_name is None else qs.filter(connection_channel=channel_name)


def voice_session_set_status(
    *, session_id: uuid.UUID, channel_name: str, status: VoiceSession.Status
) -> bool:
    """False when this connection no longer holds the session (superseded or ended)."""
    return bool(
        _owned(session_id, channel_name)
        .filter(status__in=VoiceSession.LIVE_STATUSES)
        .update(status=status)
    )


def voice_session_save_handle(*, session_id: uuid.UUID, channel_name: str, handle: str) -> bool:
    """Persist the newest resumable handle, so any process can resume the session."""
    return bool(
        _owned(session_id, channel_name)
        .filter(status__in=VoiceSession.LIVE_STATUSES)
        .update(resumption_handle=handle, resumption_handle_at=timezone.now())
    )


def voice_session_save_replay(
    *, session_id: uuid.UUID, channel_name: str, text: str, turn: int
) -> bool:
    """Keep the user's words of the turn at position ``turn`` (its tool calls are about to
    start) until a handle covers it: a resume elsewhere asks the model that turn again."""
    return bool(
        _owned(session_id, channel_name)
        .filter(status__in=VoiceSession.LIVE_STATUSES)
        .update(replay_text=text, replay_turn=turn)
    )


def voice_session_drop_replay(*, session_id: uuid.UUID, turn: int) -> None:
    """The turn kept for replay at ``turn`` is covered now (a handle, or a completed turn
    without resumption): a later resume must not ask it again. A newer one stays."""
    VoiceSession.objects.filter(pk=session_id, replay_turn=turn).update(
        replay_text="", replay_turn=None
    )


def voice_session_resume_token_reissue(*, session_id: uuid.UUID) -> str | None:
    """A new resume token for a live session whose client has no way to keep the last one
    (a phone call's media stream cut by a server restart: the carrier hands the new one to
    the next stream). The old token stops working. None when the session is not live."""
    raw, token_hash = _new_resume_token()
    updated = VoiceSession.objects.filter(
        pk=session_id, status__in=VoiceSession.LIVE_STATUSES
    ).update(resume_token_hash=token_hash, pending_resume_token_hash="")
    return raw if updated else None


def voice_session_promote_resume_token(*, session_id: uuid.UUID, channel_name: str) -> bool:
    """The new resume token reached the client: from now on only it works."""
    return bool(
        _owned(session_id, channel_name)
        .exclude(pending_resume_token_hash="")
        .update(resume_token_hash=F("pending_resume_token_hash"), pending_resume_token_hash="")
    )


def voice_session_flush(*, session_id: uuid.UUID, progress: SessionProgress) -> None:
    """Add a connection's counter deltas and new transcript entries, in one transaction.

    Deltas, not absolute values: a superseded connection and its successor may both write,
    and neither overwrites what the other measured.
    """
    with transaction.atomic():
        session = VoiceSession.objects.select_for_update(no_key=True).filter(pk=session_id).first()
        if session is None:
            return
        deltas: dict[str, Any] = {name: F(name) + n for name, n in progress.counters.items() if n}
        if progress.first_response_ms:
            samples = [*session.first_response_ms, *progress.first_response_ms]
            deltas["first_response_ms"] = samples[-FIRST_RESPONSE_SAMPLES:]
        if progress.reconnects:
            log = [*session.reconnect_log, *progress.reconnects]
            deltas["reconnect_log"] = log[-RECONNECT_LOG_ENTRIES:]
        if progress.turn_timings:
            timings = [*session.turn_timings, *progress.turn_timings]
            deltas["turn_timings"] = timings[-TURN_TIMINGS_KEPT:]
            histogram = session.latency_histogram
            for timing in progress.turn_timings:
                latency = _reply_ms(timing)
                if latency is not None:
                    histogram = histogram_add(histogram, latency)
            deltas["latency_histogram"] = histogram
        if deltas:
            VoiceSession.objects.filter(pk=session_id).update(**deltas)
        if progress.transcript:
            last = TranscriptEntry.objects.filter(session=session).order_by("-seq").first()
            seq = last.seq if last else 0
            TranscriptEntry.objects.bulk_create(
                TranscriptEntry(
                    tenant_id=session.tenant_id,
                    session=session,
                    seq=seq + i,
                    role=role,
                    kind=kind,
                    text=storable_text(text),  # one bad character must not lose the batch
                    at=at,
                )
                for i, (role, kind, text, at) in enumerate(progress.transcript, start=1)
            )
    progress.first_response_ms.clear()
    progress.transcript.clear()
    progress.reconnects.clear()
    progress.turn_timings.clear()


def _reply_ms(timing: dict[str, Any]) -> float | None:
    """A turn's latency as the user met it: heard (client report), else sent."""
    value = timing.get("playback_ms")
    if value is None:
        value = timing.get("reply_out_ms")
    return float(value) if value is not None else None


def voice_session_detach(
    *, session_id: uuid.UUID, channel_name: str, progress: SessionProgress
) -> bool:
    """The client vanished without "close": keep the session resumable for its window."""
    voice_session_flush(session_id=session_id, progress=progress)
    return bool(
        _owned(session_id, channel_name)
        .filter(status__in=VoiceSession.LIVE_STATUSES)
        .update(
            client_detached_at=timezone.now(),
            status=VoiceSession.Status.RECONNECTING,
            connection_channel="",  # nobody holds it: a resume has no one to supersede
        )
    )


def voice_session_end(
    *,
    session_id: uuid.UUID,
    channel_name: str | None,
    status: VoiceSession.Status,
    reason: str,
    progress: SessionProgress | None,
) -> bool:
    """End the session (only its current owner may, unless ``channel_name`` is None)."""
    if progress is not None:
        voice_session_flush(session_id=session_id, progress=progress)
    ended = bool(
        _owned(session_id, channel_name)
        .filter(status__in=VoiceSession.LIVE_STATUSES)
        .update(
            status=status,
            end_reason=reason,
            ended_at=timezone.now(),
            resume_token_hash="",
            pending_resume_token_hash="",
            client_detached_at=None,
        )
    )
    if ended:  # the report waits for a last flush when its connection did not end it
        integration_events.session_ended(session_id=session_id, settle=progress is None)
    return ended


def voice_session_end_by_api(*, session: VoiceSession, reason: str = "ended_by_api") -> bool:
    """End a live session from REST; its consumer (on any process) is told to close."""
    channel = session.connection_channel
    ended = voice_session_end(
        session_id=session.pk,
        channel_name=None,
        status=VoiceSession.Status.ENDED,
        reason=reason,
        progress=None,
    )
    if ended:
        transaction.on_commit(lambda: notify_end(channel, reason))
        if not channel:  # detached: no bridge is there to count its end
            slug = session.tenant.slug
            transaction.on_commit(lambda: metrics.session_ended_unattached(slug, reason=reason))
    return ended
