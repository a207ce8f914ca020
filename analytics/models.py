"""Usage per tenant, agent and day (kept by the rollup), and error-rate alerts."""

from __future__ import annotations

from typing import ClassVar

from django.db import models

from agents.models import Agent
from voice_platform.tenancy.models import TenantOwnedModel


class UsageDaily(TenantOwnedModel):  # type: ignore[django-manager-missing]
    """One agent's usage on one day (UTC), recomputed whole by ``analytics.rollup``.

    ``agent`` is NULL for the sessions of agents deleted since (their usage still counts).
    Sessions count on the day they started."""

    agent = models.ForeignKey(Agent, on_delete=models.SET_NULL, null=True, related_name="+")
    # The agent's id when rolled up (kept when the agent is deleted), 0 for none.
    agent_ref = models.PositiveBigIntegerField(default=0)
    day = models.DateField()
    sessions = models.PositiveIntegerField(default=0)
    sessions_failed = models.PositiveIntegerField(default=0)
    turns = models.PositiveIntegerField(default=0)
    audio_in_seconds = models.FloatField(default=0.0)
    audio_out_seconds = models.FloatField(default=0.0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    response_tokens = models.PositiveBigIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    # {"succeeded": n, "failed": n, ...} of the tool calls of the day's sessions.
    tool_calls = models.JSONField(default=dict, blank=True)
    errors = models.PositiveIntegerField(default=0)
    # Merged LATENCY_BUCKETS_MS histogram of reply latency, and its percentiles (ms).
    latency_histogram = models.JSONField(default=list, blank=True)
    reply_p50_ms = models.FloatField(null=True, blank=True)
    reply_p95_ms = models.FloatField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["-day", "agent_ref"]
        verbose_name = "daily usage"
        verbose_name_plural = "daily usage"
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["tenant", "day", "agent_ref"], name="usagedaily_tenant_day_agent_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} agent {self.agent_ref}: {self.sessions} sessions"


class Alert(TenantOwnedModel):  # type: ignore[django-manager-missing]
    """One incident: an error rate over its threshold, from raised until cleared."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLEARED = "cleared", "Cleared"

    agent = models.ForeignKey(Agent, on_delete=models.SET_NULL, null=True, related_name="+")
    # What the rate is measured over: "agent:<id>" or "tenant"; one open alert per scope.
    scope = models.CharField(max_length=64)
    kind = models.CharField(max_length=32, default="error_rate")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    raised_at = models.DateTimeField()
    cleared_at = models.DateTimeField(null=True, blank=True)
    window_seconds = models.PositiveIntegerField()
    threshold = models.FloatField()
    # The window's figures when raised, and the worst rate seen while open.
    events = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    error_rate = models.FloatField()
    peak_error_rate = models.FloatField()
    last_error_rate = models.FloatField(null=True, blank=True)
    # The tenant webhook's deliveries: [{"event", "at", "status", "error"}].
    deliveries = models.JSONField(default=list, blank=True)

    class Meta:
        ordering: ClassVar = ["-raised_at"]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["tenant", "scope", "kind"],
                condition=models.Q(status="open"),
                name="alert_one_open_per_scope",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.scope} ({self.status})"
