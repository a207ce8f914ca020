"""Agent admin: tenant staff see and change only their tenant's agents."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from agents.models import Agent
from agents.services import AGENT_WRITABLE_FIELDS
from playground.snippets import playground_url, widget_snippet
from voice_platform.tenancy.admin_mixins import TenantScopedAdmin

# Rough English average for Gemini's tokenizer; an estimate, shown as one.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


class SystemInstructionWidget(forms.Textarea):
    """A textarea with a live character count and token estimate under it."""

    template_name = "agents/system_instruction_widget.html"

    def get_context(self, name: str, value: Any, attrs: Any) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        text = value or ""
        context["widget"]["chars"] = len(text)
        context["widget"]["tokens"] = estimate_tokens(text)
        context["widget"]["chars_per_token"] = CHARS_PER_TOKEN
        return context


class AgentAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Agent
        fields = ("tenant", *AGENT_WRITABLE_FIELDS)
        widgets = {"system_instruction": SystemInstructionWidget(attrs={"rows": 12})}


@admin.register(Agent)
class AgentAdmin(TenantScopedAdmin):
    form = AgentAdminForm
    list_display = ["name", "slug", "enabled", "model", "response_modality", "updated_at"]
    list_filter = ["enabled", "response_modality", "model"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["instruction_stats", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["tenant", "name", "slug", "enabled"]}),
        (
            "Model",
            {
                "fields": [
                    "model",
                    "response_modality",
                    "voice",
                    "temperature",
                    "system_instruction",
                    "instruction_stats",
                ]
            },
        ),
        (
            "Transcription and context",
            {
                "fields": [
                    "input_transcription",
                    "output_transcription",
                    "compression_trigger_tokens",
                    "compression_target_tokens",
                    "context_limit_tokens",
                    "session_resumption",
                ]
            },
        ),
        (
            "Voice activity detection",
            {
                "fields": [
                    "vad_enabled",
                    "vad_start_sensitivity",
                    "vad_end_sensitivity",
                    "vad_prefix_padding_ms",
                    "vad_silence_duration_ms",
                ]
            },
        ),
        (
            "Sessions",
            {"fields": ["max_session_seconds", "resume_window_seconds", "allowed_origins"]},
        ),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # The "Try this agent" button and the widget snippet (templates/admin/agents/agent/).
        agent = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if agent is not None and self.has_change_permission(request, agent):
            extra["playground_url"] = playground_url(agent.pk)
            extra["widget_snippet"] = widget_snippet(request)
            extra["agent_allowed_origins"] = list(agent.allowed_origins or [])
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description="System instruction size")
    def instruction_stats(self, obj: Agent) -> str:
        text = obj.system_instruction or ""
        return format_html(
            "{} characters, about {} tokens (saved value)", len(text), estimate_tokens(text)
        )
