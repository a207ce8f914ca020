"""Admin for integrator webhooks: endpoints (the secret shown once, stored encrypted; a
test event, a new secret), deliveries with their attempts (read-only; replay)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from integrations.models import EVENT_TYPES, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from integrations.services import (
    delivery_replay_now,
    endpoint_rotate_secret,
    endpoint_send_test,
    endpoint_url_problem,
    secret_generate,
)
from voice_platform.crypto import encrypt_str
from voice_platform.tenancy.admin_mixins import (
    NotFoundAdminMixin,
    ReadOnlyAdminMixin,
    TenantScopedAdmin,
    TenantScopedInlineMixin,
)


class WebhookEndpointForm(forms.ModelForm):  # type: ignore[type-arg]
    url = forms.URLField(
        max_length=500,
        assume_scheme="https",
        help_text="HTTPS only. Private, loopback and link-local addresses are refused.",
    )
    event_types = forms.MultipleChoiceField(
        choices=[(t, t) for t in EVENT_TYPES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None checked: every event type.",
    )
    new_secret = forms.BooleanField(
        required=False,
        help_text="Generate a new signing secret (shown once) and stop signing with the old.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["tenant", "url", "description", "event_types", "enabled"]

    def clean_url(self) -> str:
        url: str = self.cleaned_data.get("url", "")
        problem = endpoint_url_problem(url) if url else None
        if problem:
            raise forms.ValidationError(problem)
        return url


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(NotFoundAdminMixin, TenantScopedAdmin):
    form = WebhookEndpointForm
    list_display = ["url", "description", "enabled", "subscribed", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["url", "description"]
    readonly_fields = ["disabled_reason", "created_at", "updated_at"]
    actions = ["send_test_event"]

    @admin.display(description="events")
    def subscribed(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.event_types) or "all"

    def save_model(
        self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool
    ) -> None:
        secret = None
        if not change:
            secret = secret_generate()
            obj.secret_encrypted = encrypt_str(secret)
        if obj.enabled:
            obj.disabled_reason = ""
        super().save_model(request, obj, form, change)
        if change and form.cleaned_data.get("new_secret"):
            secret = endpoint_rotate_secret(endpoint=obj)
        if secret:
            messages.warning(
                request, f"Copy this signing secret now; it will not be shown again: {secret}"
            )

    @admin.action(description="Send a test event", permissions=["change"])
    def send_test_event(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            endpoint_send_test(endpoint=endpoint)
        self.message_user(request, f"Test event queued for {queryset.count()} endpoint(s).")


ATTEMPT_FIELDS: list[Any] = [
    "number", "started_at", "outcome", "status_code", "error", "duration_ms",
    "retry_after_seconds",
]  # fmt: skip


class WebhookAttemptInline(TenantScopedInlineMixin, admin.TabularInline):  # type: ignore[type-arg]
    model = WebhookAttempt
    fields = ATTEMPT_FIELDS
    readonly_fields = ATTEMPT_FIELDS
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


DELIVERY_FIELDS: list[Any] = [
    "endpoint", "event_type", "msg_id", "subject", "status", "attempt_count",
    "round_attempts", "next_attempt_at", "last_status_code", "last_error", "payload",
    "created_at", "updated_at",
]  # fmt: skip


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, NotFoundAdminMixin, TenantScopedAdmin):
    """Written by delivery only; the one thing to do is replay."""

    list_display = [
        "created_at", "event_type", "endpoint", "status", "attempt_count", "last_status_code",
        "next_attempt_at",
    ]  # fmt: skip
    list_filter = ["status", "event_type"]
    list_select_related = ["endpoint"]
    search_fields = ["msg_id", "subject"]
    date_hierarchy = "created_at"
    fields = DELIVERY_FIELDS
    readonly_fields = DELIVERY_FIELDS
    inlines = [WebhookAttemptInline]
    actions = ["replay"]

    def has_replay_permission(self, request: HttpRequest) -> bool:
        # Replaying sends data out: tenant admins (and superusers), not viewers.
        return TenantScopedAdmin.has_change_permission(self, request)

    @admin.action(description="Replay (same webhook-id, new attempts)", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        replayed = sum(delivery_replay_now(delivery=d) for d in queryset)
        skipped = queryset.count() - replayed
        self.message_user(request, f"{replayed} delivery(ies) replayed.")
        if skipped:
            self.message_user(
                request,
                f"{skipped} still pending or being delivered: not replayed.",
                level=messages.WARNING,
            )
