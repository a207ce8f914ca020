"""The first tenant of an install, its admin user and an API key (``manage.py bootstrap``).

Idempotent: what exists is reused and left as it is (an existing user keeps its password),
so the compose stack's one-shot service can run it at every start. An API key is minted only
with the tenant, or when asked; its raw value is returned once and never stored or logged.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from voice_platform.tenancy.models import Membership, Tenant
from voice_platform.tenancy.services import api_key_create, membership_create, tenant_create


class BootstrapError(Exception):
    """Input the bootstrap cannot use (a bad slug or password, a user of another tenant)."""


@dataclass(frozen=True)
class BootstrapResult:
    tenant_slug: str
    tenant_name: str
    tenant_created: bool
    admin_username: str
    admin_created: bool
    # Set only when this call generated it: a password the operator chose is not echoed.
    admin_password: str | None
    # The raw key when this call minted one (shown once), else None.
    api_key: str | None

    @property
    def changed(self) -> bool:
        return self.tenant_created or self.admin_created or self.api_key is not None

    def as_json(self) -> dict[str, object]:
        return {
            "tenant": {
                "slug": self.tenant_slug,
                "name": self.tenant_name,
                "created": self.tenant_created,
            },
            "admin": {
                "username": self.admin_username,
                "created": self.admin_created,
                "password": self.admin_password,
            },
            "api_key": self.api_key,
        }


def generate_password() -> str:
    """24 URL-safe characters (144 bits): passes every password validator."""
    return secrets.token_urlsafe(18)


def _messages(exc: ValidationError) -> str:
    return "; ".join(exc.messages)


@transaction.atomic
def bootstrap(
    *,
    tenant_name: str,
    tenant_slug: str,
    admin_username: str,
    admin_password: str | None = None,
    admin_email: str = "",
    new_api_key: bool = False,
    api_key_name: str = "bootstrap key",
    max_concurrent_sessions: int = 10,
) -> BootstrapResult:
    """Create what is missing of (tenant, staff admin with an admin membership, API key)."""
    if not admin_username.strip():
        raise BootstrapError("the admin username must not be empty")
    tenant = Tenant.objects.filter(slug=tenant_slug).first()
    tenant_created = tenant is None
    if tenant is None:
        try:
            tenant = tenant_create(
                name=tenant_name or tenant_slug,
                slug=tenant_slug,
                max_concurrent_sessions=max_concurrent_sessions,
            )
        except ValidationError as exc:
            raise BootstrapError(f"tenant: {_messages(exc)}") from exc

    user_model = get_user_model()
    user = user_model.objects.filter(username=admin_username).first()
    admin_created = user is None
    generated: str | None = None
    if user is None:
        user = user_model(username=admin_username, email=admin_email, is_staff=True)
        password = admin_password
        if not password:
            password = generated = generate_password()
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise BootstrapError(f"admin password: {_messages(exc)}") from exc
        user.set_password(password)
        user.save()
    else:
        # One staff account per tenant (tenancy/selectors.py): never a second tenant's admin.
        other = Membership.objects.filter(user=user).exclude(tenant=tenant).first()
        if other is not None:
            raise BootstrapError(
                f"user {admin_username!r} already administers tenant {other.tenant.slug!r}"
            )
        if not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
    if not Membership.objects.filter(user=user, tenant=tenant).exists():
        membership_create(user=user, tenant=tenant, role=Membership.Role.ADMIN)

    raw_key = None
    if tenant_created or new_api_key:
        raw_key = api_key_create(tenant=tenant, name=api_key_name).raw_key
    return BootstrapResult(
        tenant_slug=tenant.slug,
        tenant_name=tenant.name,
        tenant_created=tenant_created,
        admin_username=user.get_username(),
        admin_created=admin_created,
        admin_password=generated,
        api_key=raw_key,
    )
