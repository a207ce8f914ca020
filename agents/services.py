"""Writes for agents. Validation is the model's (``full_clean``), so admin and REST agree."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import ProtectedError, RestrictedError

from agents.models import Agent
from voice_platform.tenancy.models import Tenant

# Fields an integrator may set; tenant and timestamps are never client-controlled.
AGENT_WRITABLE_FIELDS = (
    "name",
    "slug",
    "enabled",
    "model",
    "response_modality",
    "voice",
    "system_instruction",
    "temperature",
    "input_transcription",
    "output_transcription",
    "compression_trigger_tokens",
    "compression_target_tokens",
    "context_limit_tokens",
    "session_resumption",
    "vad_enabled",
    "vad_start_sensitivity",
    "vad_end_sensitivity",
    "vad_prefix_padding_ms",
    "vad_silence_duration_ms",
    "max_session_seconds",
    "resume_window_seconds",
    "allowed_origins",
)


@transaction.atomic
def agent_create(*, tenant: Tenant, **fields: Any) -> Agent:
    agent = Agent(tenant=tenant, **fields)
    agent.full_clean()
    agent.save()
    return agent


@transaction.atomic
def agent_update(*, agent: Agent, **fields: Any) -> Agent:
    for name, value in fields.items():
        if name not in AGENT_WRITABLE_FIELDS:
            raise ValueError(f"{name} is not writable")
        setattr(agent, name, value)
    agent.full_clean()
    agent.save()
    return agent


@transaction.atomic
def agent_delete(*, agent: Agent) -> None:
    try:
        agent.delete()
    except (ProtectedError, RestrictedError) as exc:  # phone numbers ring it (telephony)
        raise ValidationError(
            "Phone numbers ring this agent: point them at another agent or delete them first."
        ) from exc
