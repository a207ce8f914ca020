"""Endpoints: create, change, rotate the secret, send a test event (docs/webhooks.md)."""

from __future__ import annotations

import base64
import ipaddress
import secrets
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations.delivery import delivery_replay
from integrations.dispatch import delivery_schedule
from integrations.events import new_msg_id
from integrations.models import EVENT_TYPES, WebhookDelivery, WebhookEndpoint
from integrations.payloads import envelope
from tools.webhooks import WebhookRefused, address_refusal, resolve_public
from voice_platform.crypto import encrypt_str
from voice_platform.tenancy.models import Tenant

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = 32
TEST_EVENT = "webhook.test"
# A save waits at most this long for the host's addresses (a slow resolver must not hold
# the request); unresolved names are accepted and checked again at each send.
SAVE_LOOKUP_TIMEOUT = 2.0


class EndpointInvalid(ValueError):
    """A field the platform refuses; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def secret_generate() -> str:
    """A new signing secret in the Standard Webhooks form: ``whsec_`` + base64 of 32 bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def endpoint_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an endpoint, or None: the outbound rules of webhook tools
    (HTTPS, no credentials, no private, loopback, link-local... address, unless inside
    ``TOOL_WEBHOOK_ALLOWED_NETWORKS``). A host name is resolved: one with a refused address
    is refused now (and, as DNS can change, every send checks again)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return "only https:// URLs are called"
    if parts.username or parts.password:
        return "credentials in the URL are not allowed"
    try:
        port = parts.port or 443
    except ValueError:
        return "the URL's port is not a number"
    allowed = [
        ipaddress.ip_network(n, strict=False) for n in settings.TOOL_WEBHOOK_ALLOWED_NETWORKS
    ]
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        try:
            resolve_public(parts.hostname, port, timeout=SAVE_LOOKUP_TIMEOUT)
        except WebhookRefused as exc:
            return str(exc)
        except Exception:  # unresolvable or slow now: checked at each send
            return None
        return None
    return address_refusal(address, allowed)


def _checked(url: str, event_types: list[str]) -> None:
    problem = endpoint_url_problem(url)
    if problem:
        raise EndpointInvalid("url", problem)
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        raise EndpointInvalid("event_types", f"unknown event types: {', '.join(unknown)}")


def endpoint_create(
    *,
    tenant: Tenant,
    url: str,
    description: str = "",
    event_types: list[str] | None = None,
    enabled: bool = True,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret in plain text (shown once, stored encrypted)."""
    event_types = list(dict.fromkeys(event_types or []))
    _checked(url, event_types)
    secret = secret_generate()
    endpoint = WebhookEndpoint.objects.create(
        tenant=tenant,
        url=url,
        description=description,
        event_types=event_types,
        enabled=enabled,
        secret_encrypted=encrypt_str(secret),
    )
    return endpoint, secret


def endpoint_update(*, endpoint: WebhookEndpoint, **fields: Any) -> WebhookEndpoint:
    """Change ``url``, ``description``, ``event_types`` or ``enabled``."""
    if "event_types" in fields:
        fields["event_types"] = list(dict.fromkeys(fields["event_types"] or []))
    _checked(fields.get("url", endpoint.url), fields.get("event_types", endpoint.event_types))
    for name, value in fields.items():
        setattr(endpoint, name, value)
    if fields.get("enabled"):
        endpoint.disabled_reason = ""
    endpoint.save()
    return endpoint


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> str:
    """A new signing secret (returned once); the old one stops being used at once."""
    secret = secret_generate()
    endpoint.secret_encrypted = encrypt_str(secret)
    endpoint.save(update_fields=["secret_encrypted", "updated_at"])
    return secret


def endpoint_send_test(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """Queue a ``webhook.test`` event to this endpoint alone (whatever it subscribes to)."""
    now = timezone.now()
    delivery: WebhookDelivery = WebhookDelivery.objects.create(
        tenant_id=endpoint.tenant_id,
        endpoint=endpoint,
        event_type=TEST_EVENT,
        msg_id=new_msg_id(),
        payload=envelope(TEST_EVENT, now, {"endpoint_id": endpoint.pk}),
        next_attempt_at=now,
    )
    tenant_id = endpoint.tenant_id
    transaction.on_commit(lambda: delivery_schedule(tenant_id=tenant_id, delivery_id=delivery.pk))
    return delivery


def delivery_replay_now(*, delivery: WebhookDelivery) -> bool:
    """Replay a finished delivery (same ``webhook-id``, same body) as a new round of
    attempts, starting now; False while it is still pending or being delivered."""
    if not delivery_replay(delivery=delivery):
        return False
    tenant_id, delivery_id = delivery.tenant_id, delivery.pk
    transaction.on_commit(lambda: delivery_schedule(tenant_id=tenant_id, delivery_id=delivery_id))
    return True
