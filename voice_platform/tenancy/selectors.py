"""Reads for tenancy."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from voice_platform.tenancy.models import Membership


def membership_for_user(*, user: AbstractBaseUser | AnonymousUser) -> Membership | None:
    """The membership that scopes this user in the admin: the oldest one.

    A person who works for several tenants gets one staff account per tenant; keeping one
    tenant per account means the admin never has to guess which tenant a write is for.
    """
    if not user.is_authenticated:
        return None
    return (
        Membership.objects.select_related("tenant").filter(user_id=user.pk).order_by("id").first()
    )
