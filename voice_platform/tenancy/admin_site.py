"""The admin door: every admin view runs inside the signed-in user's tenant scope.

Superusers get ``all_tenants()``; tenant staff (a ``Membership``) get ``tenant_scope``.
Staff without a membership are not let in at all. The site's own "view on site" shortcut
(``/admin/r/<content type>/<id>/``) is replaced by one that reads through the admin's
scoped querysets (see ``PlatformAdminSite.view_on_site``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import update_wrapper
from typing import Any

from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import models
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.urls import URLPattern, URLResolver, path, reverse

from voice_platform.tenancy.models import Membership
from voice_platform.tenancy.scope import all_tenants, tenant_scope
from voice_platform.tenancy.selectors import membership_for_user


def admin_membership(request: HttpRequest) -> Membership | None:
    """The membership the admin scopes this request to (cached on the request)."""
    if not hasattr(request, "_admin_membership"):
        request._admin_membership = membership_for_user(user=request.user)  # type: ignore[attr-defined]
    membership: Membership | None = request._admin_membership  # type: ignore[attr-defined]
    return membership


@contextmanager
def admin_scope(request: HttpRequest) -> Iterator[None]:
    user = request.user
    if user.is_authenticated and user.is_superuser:
        # all_tenants: platform operators administer every tenant, with a tenant filter.
        with all_tenants():
            yield
        return
    membership = admin_membership(request)
    if membership is None:
        # Not a tenant member: the view itself will refuse (has_permission is False).
        yield
        return
    request.tenant = membership.tenant  # type: ignore[attr-defined]
    with tenant_scope(membership.tenant_id):
        yield


class PlatformAdminSite(admin.AdminSite):
    site_header = "Voice Platform"
    site_title = "Voice Platform admin"
    index_title = "Administration"

    def has_permission(self, request: HttpRequest) -> bool:
        if not super().has_permission(request):
            return False
        return bool(request.user.is_superuser or admin_membership(request) is not None)

    def admin_view(self, view: Any, cacheable: bool = False) -> Any:
        inner = super().admin_view(view, cacheable)

        def scoped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            with admin_scope(request):
                response = inner(request, *args, **kwargs)
                # Template responses render lazily; render inside the scope.
                if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                    response.render()
                return response

        return update_wrapper(scoped, view)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        # Imported here: analytics imports this module (the admin door) itself.
        from analytics.dashboard import dashboard_view

        # The tenant dashboard (docs/dashboard.md), behind the same door as every admin page.
        dashboard = path("dashboard/", self.admin_view(dashboard_view), name="dashboard")
        # Django's shortcut reads the model's unscoped base manager: another tenant's id
        # answered differently from a missing one, and a malformed UUID was a 500.
        ours = path(
            "r/<path:content_type_id>/<path:object_id>/",
            self.admin_view(self.view_on_site),
            name="view_on_site",
        )
        return [dashboard] + [
            ours if getattr(url, "name", None) == "view_on_site" else url
            for url in super().get_urls()
        ]

    def get_app_list(
        self, request: HttpRequest, app_label: str | None = None
    ) -> list[dict[str, Any]]:
        """The apps of the index and the nav sidebar, led by a "Dashboard" entry."""
        apps: list[dict[str, Any]] = super().get_app_list(request, app_label)
        if app_label is not None or not self.has_permission(request):
            return apps
        url = reverse("admin:dashboard", current_app=self.name)
        entry = {
            "name": "Dashboard", "object_name": "Dashboard", "admin_url": url, "add_url": None,
            "view_only": True, "perms": {"view": True},
        }  # fmt: skip
        section = {
            "name": "Analytics", "app_label": "vp_dashboard", "app_url": url,
            "has_module_perms": True, "models": [entry],
        }  # fmt: skip
        return [section, *apps]

    def view_on_site(
        self, request: HttpRequest, content_type_id: str, object_id: str
    ) -> HttpResponseRedirect:
        """Redirect to the page of an object this user may view in this admin.

        The object is looked up exactly as its change page does (the model admin's
        queryset, inside the request's tenant scope) and needs view permission. Every
        failure, an unknown content type, a model not in this admin, a malformed, missing or
        another tenant's id, a model without a page, is the same 404 with the same
        message, so even the DEBUG page tells nothing apart.
        """
        obj = self._visible_object(request, content_type_id, object_id)
        get_url = getattr(obj, "get_absolute_url", None)
        if obj is None or get_url is None:
            raise Http404("Not found.")
        # Same site as the admin: a relative redirect (Django's adds the request's host).
        return HttpResponseRedirect(get_url())

    def _visible_object(
        self, request: HttpRequest, content_type_id: str, object_id: str
    ) -> models.Model | None:
        if "\x00" in object_id:  # PostgreSQL cannot even compare a string with NUL in it
            return None
        try:
            content_type = ContentType.objects.filter(pk=int(content_type_id)).first()
        except (ValueError, OverflowError):
            return None
        model = content_type.model_class() if content_type is not None else None
        if model is None or not self.is_registered(model):
            return None
        model_admin = self.get_model_admin(model)
        try:
            # get_object answers None for a malformed or missing id; its queryset is the
            # admin's own, scoped to the user's tenant.
            obj: models.Model | None = model_admin.get_object(request, object_id)
        except (ValidationError, ValueError, OverflowError):
            return None
        if obj is None or not model_admin.has_view_or_change_permission(request, obj):
            return None
        return obj
