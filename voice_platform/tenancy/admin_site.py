"""The admin door: every admin view runs inside the signed-in user's tenant scope.

Superusers get ``all_tenants()``; tenant staff (a ``Membership``) get ``tenant_scope``.
Staff without a membership are not let in at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import update_wrapper
from typing import Any

from django.contrib import admin
from django.http import HttpRequest

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
