"""Tools admin: the registry (read-only), webhook tools, the allowlist inline on the agent,
the audit log and the outbox (read-only for everyone) and the lookup table."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

from agents.admin import AgentAdmin
from tools.models import AgentTool, LookupRecord, OutboxEmail, Tool, ToolCallRecord, WebhookTool
from tools.services import webhook_tool_update
from voice_platform.tenancy.admin_mixins import (
    TenantScopedAdmin,
    TenantScopedInlineMixin,
    _role,
)
from voice_platform.tenancy.models import Membership


def _is_member(request: HttpRequest) -> bool:
    return bool(request.user.is_superuser or _role(request) is not None)


def _is_admin(request: HttpRequest) -> bool:
    return bool(request.user.is_superuser or _role(request) == Membership.Role.ADMIN)


class ReadOnlyAdminMixin:
    """Visible to members, writable by no one (not even superusers): an audit stays as it
    was written."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Tool)
class ToolAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """The registry mirror: code decides what exists (``manage.py tools_sync``)."""

    list_display = ["name", "available", "behavior", "default_timeout", "default_rate_limit"]
    list_filter = ["available", "behavior"]
    search_fields = ["name", "description"]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _is_member(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_member(request)


class WebhookToolForm(forms.ModelForm):  # type: ignore[type-arg]
    url = forms.URLField(
        max_length=500,
        assume_scheme="https",
        help_text="HTTPS only. Private, loopback and link-local addresses are refused.",
    )
    signing_secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Used to sign every call (HMAC-SHA256), stored encrypted and never shown. "
        "Leave blank to keep the current one.",
    )

    class Meta:
        model = WebhookTool
        fields = [
            "tenant",
            "name",
            "description",
            "parameters_schema",
            "url",
            "timeout_seconds",
            "rate_limit",
            "enabled",
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.instance.secret_encrypted and not cleaned.get("signing_secret"):
            self.add_error("signing_secret", "A signing secret is required.")
        return cleaned


@admin.register(WebhookTool)
class WebhookToolAdmin(TenantScopedAdmin):
    form = WebhookToolForm
    list_display = ["name", "url", "enabled", "timeout_seconds", "updated_at"]
    list_filter = ["enabled"]
    search_fields = ["name", "url"]

    def save_model(self, request: HttpRequest, obj: WebhookTool, form: Any, change: bool) -> None:
        # The form already validated the fields; the service encrypts the secret.
        webhook_tool_update(webhook_tool=obj, secret=form.cleaned_data.get("signing_secret"))


class AgentToolFormSet(BaseInlineFormSet):  # type: ignore[type-arg]
    """Allowlist rows take the agent's tenant before validation, so the model's clean()
    (policy against the tool's schema, same-tenant webhook tool) sees it."""

    def _construct_form(self, i: int, **kwargs: Any) -> Any:
        form = super()._construct_form(i, **kwargs)  # type: ignore[misc]
        if self.instance is not None and self.instance.tenant_id is not None:
            form.instance.tenant_id = self.instance.tenant_id
        return form

    def full_clean(self) -> None:
        # A POST without this inline's management form did not touch the allowlist (e.g. a
        # scripted agent form): treat it as "no rows changed" instead of failing the agent.
        if self.is_bound and f"{self.prefix}-TOTAL_FORMS" not in self.data:
            self._errors: list[Any] = []
            self._non_form_errors = self.error_class(
                error_class="nonform",
                renderer=self.renderer,  # type: ignore[attr-defined]
            )
            return
        super().full_clean()

    def save_new(self, form: Any, commit: bool = True) -> Any:
        form.instance.tenant_id = self.instance.tenant_id
        return super().save_new(form, commit=commit)


class AgentToolInline(TenantScopedInlineMixin, admin.TabularInline):  # type: ignore[type-arg]
    model = AgentTool
    formset = AgentToolFormSet
    fields = ["tool", "webhook_tool", "enabled", "policy", "rate_limit", "timeout_seconds"]
    extra = 0
    verbose_name = "allowlisted tool"
    verbose_name_plural = "Tools (allowlist)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_admin(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_admin(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_admin(request)

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        request._tools_parent_agent = obj  # type: ignore[attr-defined]
        return super().get_formset(request, obj, **kwargs)

    def formfield_for_foreignkey(
        self, db_field: models.ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> Any:
        if db_field.name == "webhook_tool":
            # The scoped manager already limits staff to their tenant; superusers see only
            # the edited agent's tenant (the model's clean() checks it again).
            queryset = WebhookTool.objects.all()
            agent = getattr(request, "_tools_parent_agent", None)
            if agent is not None:
                queryset = queryset.filter(tenant_id=agent.tenant_id)
            elif not request.user.is_superuser and getattr(request, "tenant", None) is not None:
                queryset = queryset.filter(tenant=request.tenant)  # type: ignore[attr-defined]
            kwargs["queryset"] = queryset
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


# The agent admin is the agents app's; the allowlist inline is added from here so the
# agents app does not import tools (keeps the dependency one-way).
AgentAdmin.inlines = [*AgentAdmin.inlines, AgentToolInline]


@admin.register(ToolCallRecord)
class ToolCallRecordAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = [
        "created_at",
        "tool_name",
        "status",
        "agent",
        "end_user_id",
        "call_id",
        "duration_ms",
    ]
    list_filter = ["status", "tool_name", "agent", "created_at"]
    search_fields = ["call_id", "tool_name", "end_user_id"]
    date_hierarchy = "created_at"
    exclude = ["pending_arguments"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.fields if f.name != "pending_arguments"]


@admin.register(OutboxEmail)
class OutboxEmailAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["created_at", "to", "subject"]
    search_fields = ["to", "subject"]
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.fields]


@admin.register(LookupRecord)
class LookupRecordAdmin(TenantScopedAdmin):
    list_display = ["key", "value", "updated_at"]
    search_fields = ["key", "value"]
    fields = ["tenant", "key", "value"]
