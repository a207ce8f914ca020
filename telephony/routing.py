"""WebSocket routes of phone calls: the carrier's media streams."""

from __future__ import annotations

from typing import Any

from django.urls import path

from telephony.media import PhoneMediaConsumer
from telephony.models import CarrierAccount
from voice_platform.tenancy.channels import TenantMiddleware


def resolve_account_tenant(scope: dict[str, Any]) -> int | None:
    """The tenant of the carrier account the stream's URL names (the credential in its
    ``start`` message is checked inside that tenant's scope)."""
    account_id = scope.get("url_route", {}).get("kwargs", {}).get("account_id")
    if account_id is None:
        return None
    # unscoped: the URL is what tells us the tenant; an unknown or disabled account has none.
    return (
        CarrierAccount.unscoped.filter(public_id=account_id, enabled=True)
        .values_list("tenant_id", flat=True)
        .first()
    )


websocket_urlpatterns = [
    path(
        "ws/v1/phone/twilio/<uuid:account_id>",
        TenantMiddleware(PhoneMediaConsumer.as_asgi(), resolve_account_tenant),
    ),
]
