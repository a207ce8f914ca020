"""Fixtures for integrator webhooks: a real local HTTPS receiver (tests/tools/conftest.py),
endpoints made through the service (so their secret is known), deliveries attempted."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from integrations.models import WebhookDelivery, WebhookEndpoint
from integrations.services import endpoint_create
from tests.sessions.conftest import (  # noqa: F401  (shared fixtures)
    live_settings,
    no_leaked_tasks,
)
from tests.tools.conftest import (  # noqa: F401  (shared fixtures)
    WebhookReceiver,
    celery_worker_process,
    synced_tools,
    tool_threads,
    webhook_receiver,
)
from voice_platform.tenancy.scope import tenant_scope


@pytest.fixture(autouse=True)
def _inprocess_delivery(settings: Any) -> None:
    """Deliveries run on this process's threads unless a test asks for Celery: a broker
    with no worker on its queue would only pile messages up."""
    settings.WEBHOOK_DELIVERY = "inprocess"


def make_endpoint(tenant: Any, url: str, **fields: Any) -> tuple[WebhookEndpoint, str]:
    with tenant_scope(tenant.pk):
        return endpoint_create(tenant=tenant, url=url, **fields)


def answers(*statuses: int) -> Callable[[dict[str, Any]], tuple[int, dict[str, str], bytes]]:
    """A receiver handler answering these statuses in turn (the last one from then on)."""
    left = list(statuses)

    def handler(request: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        status = left.pop(0) if len(left) > 1 else left[0]
        return status, {"Content-Type": "application/json"}, b"{}"

    return handler


def bodies(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    return [json.loads(r["body"]) for r in receiver.requests]


def delivery(pk: int) -> WebhookDelivery:
    # unscoped: a test's read past any scope.
    found: WebhookDelivery = WebhookDelivery.unscoped.get(pk=pk)
    return found
