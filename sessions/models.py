"""Client tokens, live voice sessions and their transcripts."""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.db import models

from agents.models import Agent
from sessions.turn_timing import percentile
from voice_platform.tenancy.models import ApiKey, TenantOwnedModel

FIRST_RESPONSE_SAMPLES = 500
RECONNECT_LOG_ENTRIES = 500
TURN_TIMINGS_KEPT = 500
# The per-turn figures a session summarises as p50/p95 (docs/observability.md).
TIMING_FIGURES = ("reply_in_ms", "reply_out_ms", "playback_ms", "tool_ms", "reconnect_gap_ms")


class ClientToken(TenantOwnedModel):
    """A short-lived credential an end user's app opens sessions with. Hash stored only."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+")
    end_user_id = models.CharField(max_length=200)
    prefix = models.CharField(max_length=16, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    metadata = models.JSONField(default=dict, blank=True)
    uses = models.PositiveSmallIntegerField()
    uses_left = models.PositiveSmallIntegerField()
    expires_at = models.DateTimeField()
    new_session_expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering: ClassVar = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… for {self.end_user_id}"


# The scoped default manager is opaque to django-stubs, so "transcript" cannot be typed.
class VoiceSession(TenantOwnedModel):  # type: ignore[django-manager-missing]
    class Status(models.TextChoices):
        CONNECTING = "connecting", "Connecting"
        ACTIVE = "active", "Active"
        RECONNECTING = "reconnecting", "Reconnecting"
        ENDED = "ended", "Ended"
        FAILED = "failed", "Failed"

    LIVE_STATUSES: ClassVar = (Status.CONNECTING, Status.ACTIVE, Status.RECONNECTING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.SET_NULL, null=True, related_name="+")
    client_token = models.ForeignKey(
        ClientToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    end_user_id = models.CharField(max_length=200)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CONNECTING)
    end_reason = models.CharField(max_length=64, blank=True, default="")
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # Set while no client is attached (dropped without "close"): the resume window runs.
    client_detached_at = models.DateTimeField(null=True, blank=True)
    # The channel name of the consumer that holds the session now (for superseding).
    connection_channel = models.CharField(max_length=200, blank=True, default="")
    resumption_handle = models.TextField(blank=True, default="")
    resumption_handle_at = models.DateTimeField(null=True, blank=True)
    # The user's words of a turn whose tool calls started but that no handle covers yet, and
    # its position: a resume on another process asks the model this turn again, so the
    # calls come again and are answered from their stored outcomes.
    replay_text = models.TextField(blank=True, default="")
    replay_turn = models.PositiveIntegerField(null=True, blank=True)
    resume_token_hash = models.CharField(max_length=64, blank=True, default="", db_index=True)
    # A resume rotates the token, but the old one stays valid until the new one has reached
    # the client in session.started (a client that drops before that can still come back).
    pending_resume_token_hash = models.CharField(max_length=64, blank=True, default="")
    # Heartbeat of the process holding the session: a stale one means the process died.
    last_seen_at = models.DateTimeField(null=True, blank=True)

    client_frames_in = models.PositiveBigIntegerField(default=0)
    client_bytes_in = models.PositiveBigIntegerField(default=0)
    model_frames_out = models.PositiveBigIntegerField(default=0)
    model_bytes_out = models.PositiveBigIntegerField(default=0)
    dropped_audio_frames = models.PositiveBigIntegerField(default=0)
    turns = models.PositiveIntegerField(default=0)
    interruptions = models.PositiveIntegerField(default=0)
    tool_calls = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    reconnects = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    response_tokens = models.PositiveBigIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    # Per-turn latency from the end of the user's turn to the model's first output, in ms;
    # the most recent FIRST_RESPONSE_SAMPLES turns, summarised by the p50/p95 properties.
    first_response_ms = models.JSONField(default=list, blank=True)
    # Every upstream reconnect (the newest RECONNECT_LOG_ENTRIES): when, why (its cause, see
    # docs/live-resilience.md), how long the user waited, whether the context was rebuilt.
    reconnect_log = models.JSONField(default=list, blank=True)
    # Every turn's timing (``sessions.turn_timing.TurnTiming``), the newest TURN_TIMINGS_KEPT.
    turn_timings = models.JSONField(default=list, blank=True)
    # Counts of every turn's reply latency in LATENCY_BUCKETS_MS buckets (all turns, not only
    # the kept ones): what usage analytics merge into percentiles per day.
    latency_histogram = models.JSONField(default=list, blank=True)

    class Meta:
        ordering: ClassVar = ["-started_at"]
        indexes: ClassVar = [
            models.Index(fields=["tenant", "status"]),
            # The dashboard's and the rollup's reads: a tenant's sessions by start time.
            models.Index(fields=["tenant", "started_at"], name="session_tenant_started"),
        ]

    def __str__(self) -> str:
        return f"session {self.id} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in self.LIVE_STATUSES

    @property
    def first_response_ms_p50(self) -> float | None:
        return percentile(self.first_response_ms, 50)

    @property
    def first_response_ms_p95(self) -> float | None:
        return percentile(self.first_response_ms, 95)

    def timing_summary(self) -> dict[str, dict[str, float | None]]:
        """p50/p95 of each per-turn figure over the kept turns (docs/observability.md)."""
        summary = {}
        for figure in TIMING_FIGURES:
            samples = [t[figure] for t in self.turn_timings if t.get(figure) is not None]
            summary[figure.removesuffix("_ms")] = {
                "p50_ms": percentile(samples, 50),
                "p95_ms": percentile(samples, 95),
                "turns": len(samples),  # type: ignore[dict-item]
            }
        return summary


class TranscriptEntry(TenantOwnedModel):
    """One utterance: deltas are joined in memory and written once per turn."""

    class Role(models.TextChoices):
        USER = "user", "User"
        MODEL = "model", "Model"

    class Kind(models.TextChoices):
        SPEECH = "speech", "Speech (transcribed)"
        TEXT = "text", "Text"

    session = models.ForeignKey(VoiceSession, on_delete=models.CASCADE, related_name="transcript")
    seq = models.PositiveIntegerField()
    role = models.CharField(max_length=8, choices=Role.choices)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    text = models.TextField()
    at = models.DateTimeField()

    class Meta:
        ordering: ClassVar = ["session", "seq"]
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["session", "seq"], name="transcript_session_seq_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:40]}"
