"""The Agent: a tenant's voice agent and every Live setting it is opened with."""

from __future__ import annotations

from typing import ClassVar

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from agents.validators import validate_live_model, validate_origin_list, validate_voice
from voice_platform.tenancy.models import TenantOwnedModel


# The scoped default manager is opaque to django-stubs, so reverse managers cannot be typed.
class Agent(TenantOwnedModel):  # type: ignore[django-manager-missing]
    class Modality(models.TextChoices):
        AUDIO = "AUDIO", "Audio"
        TEXT = "TEXT", "Text"

    class Sensitivity(models.TextChoices):
        DEFAULT = "", "Default"
        HIGH = "HIGH", "High"
        LOW = "LOW", "Low"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64)
    enabled = models.BooleanField(default=True)
    model = models.CharField(max_length=128, validators=[validate_live_model])
    response_modality = models.CharField(max_length=8, choices=Modality.choices)
    voice = models.CharField(
        max_length=64, blank=True, default="", validators=[validate_voice],
        help_text="Prebuilt voice name; empty = the model's default voice.",
    )  # fmt: skip
    system_instruction = models.TextField(blank=True, default="")
    temperature = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)]
    )
    input_transcription = models.BooleanField(default=False)
    output_transcription = models.BooleanField(default=False)
    compression_trigger_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="Context-window compression starts above this many tokens; empty = off.",
    )  # fmt: skip
    compression_target_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="Compression shrinks the context to this many tokens (below the trigger).",
    )  # fmt: skip
    context_limit_tokens = models.PositiveIntegerField(
        default=128_000, validators=[MinValueValidator(1)],
        help_text="Used for warnings at 80 %.",
    )  # fmt: skip
    session_resumption = models.BooleanField(default=True)
    vad_enabled = models.BooleanField(
        default=True, help_text="Automatic voice activity detection; off = manual turn-taking."
    )
    vad_start_sensitivity = models.CharField(
        max_length=8, choices=Sensitivity.choices, blank=True, default=""
    )
    vad_end_sensitivity = models.CharField(
        max_length=8, choices=Sensitivity.choices, blank=True, default=""
    )
    vad_prefix_padding_ms = models.PositiveIntegerField(null=True, blank=True)
    vad_silence_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    max_session_seconds = models.PositiveIntegerField(
        default=900, validators=[MinValueValidator(1), MaxValueValidator(24 * 3600)]
    )
    resume_window_seconds = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(1), MaxValueValidator(2 * 3600)],
        help_text="How long a dropped session stays resumable (never longer than 2 h).",
    )  # fmt: skip
    allowed_origins = models.JSONField(
        default=list, blank=True, validators=[validate_origin_list],
        help_text='Browser origins allowed to connect, e.g. ["https://app.example.com"]; '
        "empty = any origin.",
    )  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["name", "id"]
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="agent_tenant_slug_uniq"),
            models.CheckConstraint(
                condition=models.Q(compression_target_tokens__isnull=True)
                | models.Q(compression_trigger_tokens__isnull=True)
                | models.Q(compression_target_tokens__lt=models.F("compression_trigger_tokens")),
                name="agent_compression_target_below_trigger",
                violation_error_message="Target tokens must be below the trigger tokens.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        trigger, target = self.compression_trigger_tokens, self.compression_target_tokens
        if target is not None and trigger is None:
            raise ValidationError(
                {"compression_target_tokens": "Set the trigger tokens too, or leave both empty."}
            )
        if target is not None and trigger is not None and target >= trigger:
            raise ValidationError(
                {"compression_target_tokens": "Target tokens must be below the trigger tokens."}
            )
