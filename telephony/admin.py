"""Admin for telephony: carrier accounts (the auth token entered, stored encrypted, never
shown), phone numbers (ringing one of the tenant's audio agents), calls (read-only).
Writes go through telephony.services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from agents.models import Agent
from telephony.inbound import phone_urls
from telephony.models import CarrierAccount, PhoneCall, PhoneNumber
from telephony.selectors import phone_number_taken
from telephony.services import (
    account_sid_problem,
    auth_token_problem,
    carrier_account_delete,
    carrier_account_update,
    phone_number_delete,
    phone_number_update,
)
from telephony.signatures import public_base_url
from voice_platform.tenancy.admin_mixins import (
    NotFoundAdminMixin,
    ReadOnlyAdminMixin,
    TenantScopedAdmin,
)


class CarrierAccountForm(forms.ModelForm):  # type: ignore[type-arg]
    auth_token = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Twilio's auth token: checks every request Twilio sends; stored encrypted "
        "and never shown. Leave blank to keep the current one.",
    )
    voice_url = forms.CharField(
        required=False,
        disabled=True,
        label="Voice URL",
        widget=forms.TextInput(attrs={"size": 90, "readonly": True}),
        help_text="Paste into the number's 'A call comes in' webhook (HTTP POST) at Twilio.",
    )
    # Set per request by CarrierAccountAdmin.get_form: the address the carrier reaches.
    public_base = ""

    class Meta:
        model = CarrierAccount
        fields = ["tenant", "name", "provider", "account_sid", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.public_base:
            self.fields["voice_url"].initial = phone_urls(
                base_url=self.public_base, public_id=self.instance.public_id
            ).voice
        else:
            self.fields["voice_url"].help_text = "Shown once the account is saved."

    def clean_account_sid(self) -> str:
        value: str = self.cleaned_data.get("account_sid", "")
        problem = account_sid_problem(value)
        if problem:
            raise forms.ValidationError(problem)
        return value

    def clean_auth_token(self) -> str:
        value: str = self.cleaned_data.get("auth_token", "")
        if not value:
            if not self.instance.auth_token_encrypted:
                raise forms.ValidationError("The account's auth token is required.")
            return ""
        problem = auth_token_problem(value)
        if problem:
            raise forms.ValidationError(problem)
        return value


@admin.register(CarrierAccount)
class CarrierAccountAdmin(NotFoundAdminMixin, TenantScopedAdmin):
    form = CarrierAccountForm
    list_display = ["name", "provider", "account_sid", "enabled", "created_at"]
    list_filter = ["enabled", "provider"]
    search_fields = ["name", "account_sid"]
    readonly_fields = ["public_id", "created_at"]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        # A subclass per request (the admin instance is shared by every thread).
        return type(form.__name__, (form,), {"public_base": public_base_url(request=request)})

    def save_model(
        self, request: HttpRequest, obj: CarrierAccount, form: Any, change: bool
    ) -> None:
        # The form validated the fields; the service encrypts the token.
        carrier_account_update(account=obj, auth_token=form.cleaned_data.get("auth_token") or None)

    def delete_model(self, request: HttpRequest, obj: CarrierAccount) -> None:
        carrier_account_delete(account=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[CarrierAccount]) -> None:
        for account in queryset:
            carrier_account_delete(account=account)


class PhoneNumberForm(forms.ModelForm):  # type: ignore[type-arg]
    # No Meta here: its choice fields would query the agents at import time, outside any
    # scope. The admin builds the form per request (inside the admin site's scope).

    def clean_number(self) -> str:
        value: str = self.cleaned_data.get("number", "")
        if value and phone_number_taken(number=value, excluding_pk=self.instance.pk):
            raise forms.ValidationError("This number is already registered.")
        return value


@admin.register(PhoneNumber)
class PhoneNumberAdmin(NotFoundAdminMixin, TenantScopedAdmin):
    form = PhoneNumberForm
    fields = [
        "tenant", "number", "carrier_account", "agent", "greeting", "greeting_by", "enabled",
        "created_at",
    ]  # fmt: skip
    list_display = ["number", "agent", "carrier_account", "greeting_by", "enabled", "created_at"]
    list_filter = ["enabled", "greeting_by"]
    list_select_related = ["agent", "carrier_account"]
    search_fields = ["number"]
    readonly_fields = ["created_at"]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        # On the request (not the shared admin instance): the choices below need it.
        request._phone_number_edited = obj  # type: ignore[attr-defined]
        return super().get_form(request, obj, change, **kwargs)

    def formfield_for_foreignkey(
        self, db_field: models.ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> forms.ModelChoiceField | None:  # type: ignore[type-arg]
        # The admin site's scope limits both to the staff user's tenant; a superuser editing
        # a number is offered its tenant's only. The model's clean() refuses another
        # tenant's rows (a superuser adding a number sees every tenant's) and a TEXT agent.
        edited = getattr(request, "_phone_number_edited", None)
        queryset: QuerySet[Any] | None = None
        if db_field.name == "agent":
            queryset = Agent.objects.filter(response_modality=Agent.Modality.AUDIO)
        elif db_field.name == "carrier_account":
            queryset = CarrierAccount.objects.all()
        if queryset is not None:
            if edited is not None:
                queryset = queryset.filter(tenant_id=edited.tenant_id)
            kwargs["queryset"] = queryset
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: PhoneNumber, form: Any, change: bool) -> None:
        phone_number_update(phone_number=obj)

    def delete_model(self, request: HttpRequest, obj: PhoneNumber) -> None:
        phone_number_delete(phone_number=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[PhoneNumber]) -> None:
        for number in queryset:
            phone_number_delete(phone_number=number)


CALL_FIELDS: list[Any] = [
    "call_sid", "phone_number", "from_number", "to_number", "session_link", "status",
    "reason", "action", "action_target", "action_done_at", "started_at", "ended_at",
]  # fmt: skip


@admin.register(PhoneCall)
class PhoneCallAdmin(ReadOnlyAdminMixin, NotFoundAdminMixin, TenantScopedAdmin):
    """Written by the webhooks and the media stream only."""

    list_display = [
        "started_at", "call_sid", "from_number", "to_number", "status", "reason", "action",
        "ended_at",
    ]  # fmt: skip
    list_filter = ["status", "reason"]
    list_select_related = ["phone_number"]
    search_fields = ["call_sid", "from_number", "to_number"]
    date_hierarchy = "started_at"
    fields = CALL_FIELDS
    readonly_fields = CALL_FIELDS

    @admin.display(description="session")
    def session_link(self, obj: PhoneCall) -> str:
        if obj.session_id is None:
            return "-"
        url = reverse("admin:voice_sessions_voicesession_change", args=[obj.session_id])
        return format_html('<a href="{}">{}</a>', url, obj.session_id)
