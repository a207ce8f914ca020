"""Admin for tenants, memberships and API keys. Writes go through services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from analytics.alert_webhooks import (
    alert_webhook_secret_generate,
    alert_webhook_secret_valid,
    alert_webhook_url_problem,
    tenant_set_alert_webhook_secret,
)
from voice_platform.tenancy.admin_mixins import TenantScopedAdmin, TenantSelfAdminMixin, _role
from voice_platform.tenancy.models import ApiKey, Membership, Tenant
from voice_platform.tenancy.services import api_key_create, api_key_revoke, tenant_set_gemini_key


class TenantAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    gemini_api_key = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="The tenant's own Gemini API key, stored encrypted. Leave blank to keep "
        "the current one; empty means the platform key is used.",
    )
    clear_gemini_api_key = forms.BooleanField(
        required=False, help_text="Remove the tenant's own key and use the platform key."
    )
    alert_webhook_url = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text="Where error-rate alerts are POSTed (alert.raised, alert.cleared), signed "
        "to the Standard Webhooks convention (docs/alerts.md). Empty: no webhook.",
    )
    # Write-only, like the Gemini key: the stored secret is never rendered back.
    alert_webhook_secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Your own signing secret (whsec_ followed by base64), stored encrypted. "
        "Leave blank to keep the current one; one is generated when a URL is first set.",
    )
    new_alert_webhook_secret = forms.BooleanField(
        required=False,
        help_text="Generate a new signing secret (shown once) and stop signing with the old.",
    )

    class Meta:
        model = Tenant
        fields = [
            "name", "slug", "status", "max_concurrent_sessions", "guaranteed_sessions",
            "alert_webhook_url",
        ]  # fmt: skip

    def clean_alert_webhook_url(self) -> str:
        url: str = self.cleaned_data.get("alert_webhook_url", "")
        problem = alert_webhook_url_problem(url) if url else None
        if problem:
            raise forms.ValidationError(problem)
        return url

    def clean_alert_webhook_secret(self) -> str:
        secret: str = self.cleaned_data.get("alert_webhook_secret", "")
        if secret and not alert_webhook_secret_valid(secret):
            raise forms.ValidationError(
                "Expected whsec_ followed by the base64 of at least 24 random bytes."
            )
        return secret


@admin.register(Tenant)
class TenantAdmin(TenantSelfAdminMixin):
    form = TenantAdminForm
    list_display = [
        "name", "slug", "status", "max_concurrent_sessions", "guaranteed_sessions",
        "has_own_gemini_key", "has_alert_webhook",
    ]  # fmt: skip
    list_filter = ["status"]
    search_fields = ["name", "slug"]

    @admin.display(boolean=True, description="Own Gemini key")
    def has_own_gemini_key(self, obj: Tenant) -> bool:
        return obj.has_own_gemini_key

    @admin.display(boolean=True, description="Alert webhook")
    def has_alert_webhook(self, obj: Tenant) -> bool:
        return bool(obj.alert_webhook_url)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser or _role(request) is not None)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser or _role(request) is not None)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser or _role(request) == Membership.Role.ADMIN)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if request.user.is_superuser:
            return []
        # Operators set status and limits; a tenant's own admins may not lift them.
        return ["slug", "status", "max_concurrent_sessions", "guaranteed_sessions"]

    def save_model(self, request: HttpRequest, obj: Tenant, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if form.cleaned_data.get("clear_gemini_api_key"):
            tenant_set_gemini_key(tenant=obj, api_key="")
        elif form.cleaned_data.get("gemini_api_key"):
            tenant_set_gemini_key(tenant=obj, api_key=form.cleaned_data["gemini_api_key"])
        self._save_alert_webhook_secret(request, obj, form)

    def _save_alert_webhook_secret(self, request: HttpRequest, obj: Tenant, form: Any) -> None:
        given = form.cleaned_data.get("alert_webhook_secret")
        if given:
            tenant_set_alert_webhook_secret(tenant=obj, secret=given)
            return
        first_url = obj.alert_webhook_url and not obj.alert_webhook_secret_encrypted
        if form.cleaned_data.get("new_alert_webhook_secret") or first_url:
            secret = alert_webhook_secret_generate()
            tenant_set_alert_webhook_secret(tenant=obj, secret=secret)
            messages.warning(
                request,
                f"Copy this alert webhook signing secret now; it will not be shown again: {secret}",
            )


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Platform operators only (tenant staff have no model permissions here)."""

    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["tenant", "role"]
    autocomplete_fields = ["tenant"]
    search_fields = ["user__username", "tenant__name"]


class ApiKeyAddForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = ApiKey
        fields = ["tenant", "name"]


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin):
    list_display = ["name", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix"]
    actions = ["revoke_keys"]
    form = ApiKeyAddForm

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["tenant", "name"]
        return ["tenant", "name", "prefix", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return []
        # A key is immutable once issued: revoke it and issue another instead.
        return ["tenant", "name", "prefix", "created_at", "last_used_at", "revoked_at"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead, so "who used which key" stays answerable

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            return
        issued = api_key_create(tenant=form.cleaned_data["tenant"], name=obj.name)
        obj.pk = issued.api_key.pk
        obj.prefix = issued.api_key.prefix
        obj.created_at = issued.api_key.created_at
        obj._state.adding = False
        messages.warning(
            request,
            f"Copy this API key now; it will not be shown again: {issued.raw_key}",
        )

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")
