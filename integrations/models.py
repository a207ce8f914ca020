"""Integrator webhooks: a tenant's endpoints, each event's delivery to one of them, and
every attempt at it (docs/webhooks.md)."""

from __future__ import annotations

from typing import ClassVar

from django.core.validators import URLValidator
from django.db import models

from voice_platform.tenancy.models import TenantOwnedModel

EVENT_TYPES = (
    "session.started",
    "session.ended",
    "tool.call.finished",
    "alert.raised",
    "alert.cleared",
)


class WebhookEndpoint(TenantOwnedModel):  # type: ignore[django-manager-missing]
    """Where a tenant's events go. The signing secret is a Fernet token
    (voice_platform.crypto) of the Standard Webhooks ``whsec_`` secret, shown once."""

    url = models.URLField(max_length=500, validators=[URLValidator(schemes=["https"])])
    description = models.CharField(max_length=200, blank=True, default="")
    # The event types sent here; empty: every type, today's and those added later.
    event_types = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    # Why the platform disabled it (an HTTP 410 answer); empty when enabled by hand.
    disabled_reason = models.CharField(max_length=200, blank=True, default="")
    secret_encrypted = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return self.description or self.url

    def subscribes(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class WebhookDelivery(TenantOwnedModel):  # type: ignore[django-manager-missing]
    """One event for one endpoint: one message (``msg_id`` is its ``webhook-id``, the same
    for every attempt and replay), tried until it succeeds or runs out of attempts."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERING = "delivering", "Delivering"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_type = models.CharField(max_length=40)
    msg_id = models.CharField(max_length=64, unique=True, editable=False)
    # What the event is about: a session id, a tool call's row id, an alert id.
    subject = models.CharField(max_length=64, blank=True, default="")
    # The JSON body; null until the first attempt builds it from the database (a
    # session's report is complete only once its last progress is stored), then frozen.
    payload = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # Every attempt ever made, and those since it was created or last replayed (the
    # retry schedule and WEBHOOK_MAX_ATTEMPTS count these).
    attempt_count = models.PositiveIntegerField(default=0)
    round_attempts = models.PositiveIntegerField(default=0)
    # pending: when the next attempt is due; delivering: when the attempt in flight is
    # given up as lost (its process died). Null once final.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        indexes: ClassVar = [
            models.Index(fields=["tenant", "created_at"], name="whdelivery_tenant_created"),
            # The sweeper's read: unfinished deliveries by due time, across tenants.
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status__in=["pending", "delivering"]),
                name="whdelivery_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.msg_id} ({self.status})"


class WebhookAttempt(TenantOwnedModel):  # type: ignore[django-manager-missing]
    """One POST (or one refused before any request was made). Never the body nor the
    secret: the status code, or a short error."""

    class Outcome(models.TextChoices):
        SENDING = "sending", "Sending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True, default="")
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SENDING)
    # The wait scheduled after this failed attempt (jitter included); null: none followed.
    retry_after_seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering: ClassVar = ["delivery", "number"]
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["delivery", "number"], name="whattempt_number_uniq")
        ]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.outcome}"
