from __future__ import annotations

from typing import Any

from rest_framework import serializers

from agents.models import Agent
from agents.services import AGENT_WRITABLE_FIELDS


class AgentSerializer(serializers.ModelSerializer[Agent]):
    class Meta:
        model = Agent
        fields = ("id", *AGENT_WRITABLE_FIELDS, "created_at", "updated_at")
        read_only_fields = ("id", "created_at", "updated_at")
        extra_kwargs: dict[str, dict[str, Any]] = {
            "response_modality": {"required": True},
            "model": {"required": True},
        }
