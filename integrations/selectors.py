"""Reads of a tenant's endpoints and deliveries."""

from __future__ import annotations

from django.db.models import QuerySet

from integrations.models import WebhookDelivery, WebhookEndpoint
from voice_platform.tenancy.models import Tenant


def endpoint_list(*, tenant: Tenant) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(tenant=tenant)


def delivery_list(
    *,
    tenant: Tenant,
    endpoint_id: int | None = None,
    event_type: str | None = None,
    status: str | None = None,
) -> QuerySet[WebhookDelivery]:
    qs = WebhookDelivery.objects.filter(tenant=tenant)
    if endpoint_id is not None:
        qs = qs.filter(endpoint_id=endpoint_id)
    if event_type:
        qs = qs.filter(event_type=event_type)
    if status:
        qs = qs.filter(status=status)
    return qs
