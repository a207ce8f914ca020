"""The only module that knows how scoping works.

Every tenant-owned model's default manager is django-scopes' ``ScopedManager``: reading it
outside ``tenant_scope()`` raises ``ScopeError`` (fail closed). The scope is entered only by
the five doors in this package: the DRF base view, the ASGI middleware, the Celery task
prologue, the admin site and the carrier door (``inbound.py``, a phone carrier's webhooks).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import models
from django_scopes import ScopedManager, get_scope, scope, scopes_disabled


def TenantManager() -> models.Manager[Any]:  # named like a class: mirrors django-scopes
    manager: models.Manager[Any] = ScopedManager(tenant="tenant")
    return manager


@contextmanager
def tenant_scope(tenant_id: int) -> Iterator[None]:
    """Everything inside sees only ``tenant_id``'s rows."""
    with scope(tenant=tenant_id):
        yield


@contextmanager
def all_tenants() -> Iterator[None]:
    """Escape hatch for superusers and maintenance. Say why at each use."""
    with scopes_disabled():
        yield


def current_tenant_id() -> int | None:
    """The tenant of the active scope, or None outside a tenant scope."""
    state = get_scope()
    if not state.get("_enabled", False):
        return None
    value = state.get("tenant")
    if value is None:
        return None
    return int(getattr(value, "pk", value))
