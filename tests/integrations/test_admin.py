"""Admin: endpoints (secret shown once, stored encrypted; a test event), deliveries with
their attempts (read-only; replay), tenant-scoped."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from integrations.delivery import delivery_attempt
from integrations.models import WebhookDelivery, WebhookEndpoint
from tests.factories import (
    WebhookAttemptFactory,
    WebhookDeliveryFactory,
    WebhookEndpointFactory,
)
from tests.helpers import logged_in
from tests.integrations.conftest import delivery, make_endpoint
from voice_platform.crypto import decrypt_str
from voice_platform.tenancy.scope import tenant_scope

pytestmark = pytest.mark.django_db

ADD = reverse("admin:integrations_webhookendpoint_add")
ENDPOINTS = reverse("admin:integrations_webhookendpoint_changelist")
DELIVERIES = reverse("admin:integrations_webhookdelivery_changelist")


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_adding_an_endpoint_shows_its_secret_once(alice, alice_staff):
    client = logged_in(alice_staff)
    response = client.post(
        ADD,
        {"url": "https://hooks.example.com/in", "description": "CRM",
         "event_types": ["session.ended", "tool.call.finished"], "enabled": "on"},
    )  # fmt: skip
    assert response.status_code == 302, response.content[:2000]
    (note,) = [m for m in messages_of(response) if "signing secret" in m]
    secret = re.search(r"whsec_\S+", note).group(0)
    endpoint = WebhookEndpoint.unscoped.get()
    assert endpoint.tenant_id == alice.tenant.pk
    assert endpoint.event_types == ["session.ended", "tool.call.finished"]
    assert decrypt_str(endpoint.secret_encrypted) == secret
    page = reverse("admin:integrations_webhookendpoint_change", args=[endpoint.pk])
    assert secret in client.get(page).content.decode()  # the message, on the next page
    again = client.get(page)
    assert again.status_code == 200
    assert secret not in again.content.decode()


@pytest.mark.parametrize(
    ("url", "message"),
    [("https://10.0.0.1/x", "private address"), ("https://127.0.0.1/x", "loopback address")],
)
def test_private_addresses_are_refused_by_the_form(alice, alice_staff, url, message):
    response = logged_in(alice_staff).post(ADD, {"url": url, "enabled": "on"})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not WebhookEndpoint.unscoped.exists()


def test_send_test_event_action(
    alice, alice_staff, webhook_receiver, django_capture_on_commit_callbacks
):
    endpoint, _ = make_endpoint(alice.tenant, webhook_receiver.url())
    with django_capture_on_commit_callbacks(execute=False):
        response = logged_in(alice_staff).post(
            ENDPOINTS, {"action": "send_test_event", "_selected_action": [endpoint.pk]}
        )
    assert response.status_code == 302
    queued = WebhookDelivery.unscoped.get(endpoint=endpoint)
    assert queued.event_type == "webhook.test"
    with tenant_scope(alice.tenant.pk):
        delivery_attempt(delivery_id=queued.pk)
    assert len(webhook_receiver.requests) == 1


def test_replay_action_resends_with_the_same_webhook_id(
    alice, alice_staff, webhook_receiver, django_capture_on_commit_callbacks
):
    endpoint, _ = make_endpoint(alice.tenant, webhook_receiver.url())
    sent = WebhookDeliveryFactory(tenant=alice.tenant, endpoint=endpoint, status="pending",
                                  attempt_count=0, round_attempts=0,
                                  next_attempt_at=timezone.now())  # fmt: skip
    with tenant_scope(alice.tenant.pk):
        delivery_attempt(delivery_id=sent.pk)
    with django_capture_on_commit_callbacks(execute=False):
        response = logged_in(alice_staff).post(
            DELIVERIES, {"action": "replay", "_selected_action": [sent.pk]}
        )
    assert response.status_code == 302
    assert "1 delivery(ies) replayed." in messages_of(response)
    with tenant_scope(alice.tenant.pk):
        delivery_attempt(delivery_id=sent.pk)
    first, second = webhook_receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == sent.msg_id
    assert delivery(sent.pk).attempt_count == 2
    # The attempts show, read-only, on the delivery's page.
    page = logged_in(alice_staff).get(
        reverse("admin:integrations_webhookdelivery_change", args=[sent.pk])
    )
    assert page.status_code == 200
    assert page.content.decode().count("succeeded") >= 3  # the delivery and both attempts


def test_viewers_cannot_replay(alice, alice_viewer):
    failed = WebhookDeliveryFactory(tenant=alice.tenant, status="failed")
    response = logged_in(alice_viewer).post(
        DELIVERIES, {"action": "replay", "_selected_action": [failed.pk]}
    )
    assert delivery(failed.pk).status == "failed"
    assert response.status_code in {200, 302, 403}


def test_another_tenants_rows_are_404(alice, alice_staff, charlie):
    theirs = WebhookEndpointFactory(tenant=charlie.tenant)
    their_delivery = WebhookDeliveryFactory(tenant=charlie.tenant, endpoint=theirs)
    WebhookAttemptFactory(tenant=charlie.tenant, delivery=their_delivery)
    client = logged_in(alice_staff)
    for url in [
        reverse("admin:integrations_webhookendpoint_change", args=[theirs.pk]),
        reverse("admin:integrations_webhookendpoint_delete", args=[theirs.pk]),
        reverse("admin:integrations_webhookdelivery_change", args=[their_delivery.pk]),
    ]:
        assert client.get(url).status_code == 404, url
    assert client.get(DELIVERIES).context["cl"].result_count == 0
    # A replay action naming their delivery does nothing to it.
    client.post(DELIVERIES, {"action": "replay", "_selected_action": [their_delivery.pk]})
    assert delivery(their_delivery.pk).status == "succeeded"
