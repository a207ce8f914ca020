"""Sessions and client tokens in the admin: read-only, per tenant; writes go through services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from analytics.session_timeline import session_timeline
from sessions.models import ClientToken, TranscriptEntry, VoiceSession
from sessions.services import voice_session_end_by_api
from sessions.tokens import client_token_revoke
from voice_platform.tenancy.admin_mixins import TenantScopedAdmin, TenantScopedInlineMixin


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TranscriptInline(ReadOnlyMixin, TenantScopedInlineMixin, admin.TabularInline):  # type: ignore[type-arg]
    model = TranscriptEntry
    fields = ("seq", "at", "role", "kind", "text")
    readonly_fields = fields
    ordering = ["seq"]
    extra = 0
    can_delete = False


@admin.register(VoiceSession)
class VoiceSessionAdmin(ReadOnlyMixin, TenantScopedAdmin):
    list_display = [
        "id", "end_user_id", "agent", "status", "end_reason", "started_at", "ended_at", "turns",
        "total_tokens",
    ]  # fmt: skip
    list_filter = ["status", "agent"]
    search_fields = ["end_user_id", "id"]
    date_hierarchy = "started_at"
    inlines = [TranscriptInline]
    actions = ["end_sessions"]
    readonly_fields = [
        "id", "agent", "end_user_id", "metadata", "status", "end_reason", "started_at",
        "ended_at", "client_detached_at", "client_frames_in", "client_bytes_in",
        "model_frames_out", "model_bytes_out", "dropped_audio_frames", "turns", "interruptions",
        "tool_calls", "errors", "reconnects", "prompt_tokens", "response_tokens", "total_tokens",
        "first_response_ms_p50", "first_response_ms_p95", "resumption_handle_at",
        "reconnect_log",
    ]  # fmt: skip
    fields = tuple(readonly_fields)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Needed for the "end" action only; every field stays read-only.
        return TenantScopedAdmin.has_change_permission(self, request, obj)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: VoiceSession | None = None,
    ) -> HttpResponse:
        # The call's timeline (turns, tool calls, reconnects) above the transcript; obj was
        # read through this admin's scoped queryset, so it is the user's tenant's session.
        if obj is not None:
            context["timeline"] = session_timeline(session=obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.action(description="End selected live sessions", permissions=["change"])
    def end_sessions(self, request: HttpRequest, queryset: QuerySet[VoiceSession]) -> None:
        ended = sum(voice_session_end_by_api(session=s, reason="ended_by_admin") for s in queryset)
        self.message_user(request, f"Ended {ended} session(s).")


@admin.register(ClientToken)
class ClientTokenAdmin(ReadOnlyMixin, TenantScopedAdmin):
    list_display = [
        "prefix", "agent", "end_user_id", "uses", "uses_left", "expires_at",
        "new_session_expires_at", "revoked_at",
    ]  # fmt: skip
    list_filter = ["agent", "revoked_at"]
    search_fields = ["end_user_id", "prefix"]
    readonly_fields = [
        "prefix", "agent", "end_user_id", "metadata", "uses", "uses_left", "expires_at",
        "new_session_expires_at", "created_at", "revoked_at", "created_by",
    ]  # fmt: skip
    fields = tuple(readonly_fields)
    actions = ["revoke_tokens"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return TenantScopedAdmin.has_change_permission(self, request, obj)

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ClientToken]) -> None:
        for token in queryset:
            client_token_revoke(token=token)
        self.message_user(request, f"Revoked {queryset.count()} token(s).")
