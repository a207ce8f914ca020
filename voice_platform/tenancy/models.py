"""Tenants, memberships and API keys, plus the base class of every tenant-owned model."""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from voice_platform.tenancy.scope import TenantManager


class Tenant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    max_concurrent_sessions = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1)]
    )
    # Sessions reserved for this tenant under the deployment's cap (LIVE_MAX_SESSIONS;
    # sessions/capacity.py). All tenants' guarantees add up to at most the cap.
    guaranteed_sessions = models.PositiveIntegerField(
        default=0,
        help_text="Live sessions reserved for this tenant under the deployment's "
        "LIVE_MAX_SESSIONS cap (0: none; shares what is not reserved).",
    )
    # Fernet token (voice_platform.crypto); never the plain key.
    gemini_api_key_encrypted = models.TextField(blank=True, default="", editable=False)
    # Where error-rate alerts are POSTed (docs/observability.md), signed with the secret
    # below (a Fernet token, voice_platform.crypto; never the plain secret).
    alert_webhook_url = models.URLField(max_length=500, blank=True, default="")
    alert_webhook_secret_encrypted = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        from sessions.capacity import capacity_cap, guarantees_total

        errors: dict[str, str] = {}
        if self.guaranteed_sessions > self.max_concurrent_sessions:
            errors["guaranteed_sessions"] = (
                "Cannot exceed the tenant's own max_concurrent_sessions "
                f"({self.max_concurrent_sessions})."
            )
        cap = capacity_cap()
        if cap > 0 and self.guaranteed_sessions and not self.has_own_gemini_key:
            others = guarantees_total(excluding_tenant=self.pk)
            if others + self.guaranteed_sessions > cap:
                errors["guaranteed_sessions"] = (
                    f"The deployment's cap is {cap} sessions and other tenants reserve "
                    f"{others}: at most {max(0, cap - others)} can be guaranteed here."
                )
        if errors:
            raise ValidationError(errors)

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    @property
    def has_own_gemini_key(self) -> bool:
        return bool(self.gemini_api_key_encrypted)


class Membership(models.Model):
    """Links a Django user to a tenant. Not scoped: it is what decides the scope."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        VIEWER = "viewer", "Viewer"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ADMIN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["user", "tenant"], name="membership_user_tenant_uniq")
        ]
        ordering: ClassVar = ["id"]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"


class TenantOwnedModel(models.Model):
    """Base of every tenant-owned model: its default manager fails closed outside a scope."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")

    objects: models.Manager[Any] = TenantManager()  # raises ScopeError outside tenant_scope()
    # First-declared is the default manager, so this must stay second.
    unscoped = models.Manager()  # superuser admin, auth lookups, maintenance; say why at each use

    class Meta:
        abstract = True


class ApiKey(TenantOwnedModel):
    """A tenant's server-to-server credential. Only a SHA-256 hash of the key is stored."""

    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering: ClassVar = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None
