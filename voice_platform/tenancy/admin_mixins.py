"""Admin base classes: tenant staff see their own tenant's rows, viewers only read."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.http import Http404, HttpRequest

from voice_platform.tenancy.admin_site import admin_membership
from voice_platform.tenancy.models import Membership, Tenant


def _role(request: HttpRequest) -> str | None:
    membership = admin_membership(request)
    return membership.role if membership else None


class TenantScopedAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """For ``TenantOwnedModel`` admins.

    Rows come from the model's scoped default manager, so the admin site's scope does the
    filtering. The tenant field is fixed to the staff user's tenant (a disabled field, so a
    forged POST cannot choose another) and offered as a choice to superusers only.
    """

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser or _role(request) is not None)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser or _role(request) is not None)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser or _role(request) == Membership.Role.ADMIN)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser or _role(request) == Membership.Role.ADMIN)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser or _role(request) == Membership.Role.ADMIN)

    def get_list_filter(self, request: HttpRequest) -> Any:
        base = list(super().get_list_filter(request))
        return ["tenant", *base] if request.user.is_superuser else base

    def get_list_display(self, request: HttpRequest) -> Any:
        base = list(super().get_list_display(request))
        return [*base, "tenant"] if request.user.is_superuser else base

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        base = list(super().get_readonly_fields(request, obj))
        # Moving an object to another tenant would orphan what refers to it there.
        if obj is not None and request.user.is_superuser and "tenant" not in base:
            base.append("tenant")
        return base

    def get_autocomplete_fields(self, request: HttpRequest) -> Any:
        base = list(super().get_autocomplete_fields(request))
        return ["tenant", *base] if request.user.is_superuser else base

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        membership = admin_membership(request)
        if membership is not None and not request.user.is_superuser:
            initial["tenant"] = str(membership.tenant_id)
        return initial

    def formfield_for_foreignkey(
        self, db_field: models.ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> forms.ModelChoiceField | None:  # type: ignore[type-arg]
        if db_field.name == "tenant" and not request.user.is_superuser:
            membership = admin_membership(request)
            own = [membership.tenant_id] if membership else []
            kwargs["queryset"] = Tenant.objects.filter(pk__in=own)
            kwargs["disabled"] = True
            kwargs["initial"] = membership.tenant_id if membership else None
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[return-value]


class TenantSelfAdminMixin(admin.ModelAdmin):  # type: ignore[type-arg]
    """For the ``Tenant`` model itself: staff see only their own tenant."""

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[Any]:
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        membership = admin_membership(request)
        return qs.filter(pk__in=[membership.tenant_id] if membership else [])


class TenantScopedInlineMixin:
    """Inlines follow the same membership rules as ``TenantScopedAdmin`` (view for members)."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser or _role(request) is not None)


class NotFoundAdminMixin:
    """A missing row, or another tenant's (missing from this tenant's scope), answers 404
    rather than Django's redirect to the index with a message: nothing tells them apart."""

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Any:
        obj = super().get_object(request, object_id, from_field)  # type: ignore[misc]
        if obj is None:
            raise Http404("Not found.")
        return obj


class ReadOnlyAdminMixin:
    """Rows written by the platform itself (alerts, webhook deliveries): shown, never added,
    changed or deleted in the admin; actions may still act on them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
