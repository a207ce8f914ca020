"""The embedded default (no broker): deliveries run on the server process's threads, the
first once the event's transaction commits, a retry when its wait is over."""

from __future__ import annotations

import time

import pytest
from django.db import transaction

from integrations.events import emit
from tests.integrations.conftest import answers, delivery, make_endpoint

pytestmark = pytest.mark.django_db(transaction=True)

EVENT = {"type": "session.started", "timestamp": "2026-01-01T00:00:00+00:00", "data": {}}


def test_a_failed_attempt_is_retried_in_process_after_its_wait(alice, webhook_receiver, settings):
    settings.WEBHOOK_RETRY_BASE = 1  # the first wait: 1 s +-20%
    webhook_receiver.handler = answers(500, 200)
    make_endpoint(alice.tenant, webhook_receiver.url())
    with transaction.atomic():
        (made,) = emit(tenant_id=alice.tenant.pk, event_type="session.started", payload=EVENT)
        time.sleep(0.3)
        assert webhook_receiver.requests == []  # nothing before the commit
    deadline = time.monotonic() + 15
    while delivery(made.pk).status != "succeeded":
        assert time.monotonic() < deadline, delivery(made.pk).last_error
        time.sleep(0.05)
    first, second = webhook_receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == made.msg_id
    assert delivery(made.pk).attempt_count == 2
