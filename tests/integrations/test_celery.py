"""A delivery through a real Celery worker (its own process), as deployed with Redis."""

from __future__ import annotations

import time

import pytest
from django.db import transaction
from standardwebhooks import Webhook

from integrations.events import emit
from tests.integrations.conftest import delivery, make_endpoint

pytestmark = pytest.mark.django_db(transaction=True)

EVENT = {"type": "alert.raised", "timestamp": "2026-01-01T00:00:00+00:00", "data": {"id": 7}}


def test_a_delivery_is_sent_by_a_real_celery_worker(
    alice, webhook_receiver, celery_worker_process, settings
):
    settings.WEBHOOK_DELIVERY = "celery"
    settings.WEBHOOK_CELERY_QUEUE = celery_worker_process.queue
    _, secret = make_endpoint(alice.tenant, webhook_receiver.url())
    with transaction.atomic():
        (made,) = emit(tenant_id=alice.tenant.pk, event_type="alert.raised", payload=EVENT)
    deadline = time.monotonic() + 30
    while delivery(made.pk).status != "succeeded":
        assert time.monotonic() < deadline, celery_worker_process.log()[-3000:]
        time.sleep(0.1)
    (request,) = webhook_receiver.requests
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert Webhook(secret).verify(request["body"], headers) == EVENT
    assert headers["webhook-id"] == made.msg_id
    assert "integrations.tasks.webhook_deliver_task" in celery_worker_process.log()
