"""REST: /api/v1/webhooks/endpoints/ and /api/v1/webhooks/deliveries/ (docs/api.md)."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from standardwebhooks import Webhook

from integrations.delivery import delivery_attempt
from integrations.models import WebhookDelivery, WebhookEndpoint
from tests.factories import (
    WebhookAttemptFactory,
    WebhookDeliveryFactory,
    WebhookEndpointFactory,
)
from tests.integrations.conftest import delivery
from voice_platform.crypto import decrypt_str
from voice_platform.tenancy.scope import tenant_scope

pytestmark = pytest.mark.django_db

ENDPOINTS = "/api/v1/webhooks/endpoints/"
DELIVERIES = "/api/v1/webhooks/deliveries/"


def create(alice: Any, **body: Any) -> Any:
    return alice.client.post(ENDPOINTS, body, format="json")


def test_create_returns_the_secret_once_and_stores_it_encrypted(alice, webhook_receiver):
    response = create(
        alice, url=webhook_receiver.url(), description="CRM", event_types=["session.ended"]
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    secret = body["secret"]
    assert secret.startswith("whsec_")
    Webhook(secret)  # a valid Standard Webhooks secret
    assert body["event_types"] == ["session.ended"]
    assert body["enabled"] is True
    stored = WebhookEndpoint.unscoped.get(pk=body["id"])
    assert secret not in stored.secret_encrypted
    assert decrypt_str(stored.secret_encrypted) == secret
    # Never again: not in the detail, not in the list.
    detail = alice.client.get(f"{ENDPOINTS}{body['id']}/").json()
    assert "secret" not in detail
    assert secret not in str(detail)
    assert secret not in alice.client.get(ENDPOINTS).content.decode()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://hooks.example.com/x", "only https:// URLs are called"),
        ("https://127.0.0.1/x", "loopback address 127.0.0.1 is not allowed"),
        ("https://localhost/x", "loopback address"),
        ("https://10.0.0.7/x", "private address 10.0.0.7 is not allowed"),
        ("https://169.254.169.254/x", "link-local address"),
        ("https://[::1]/x", "loopback address ::1"),
        ("https://user:pw@hooks.example.com/x", "credentials in the URL are not allowed"),
        ("not a url", "Enter a valid URL."),
    ],
)
def test_refused_urls_are_a_400_naming_the_field(alice, url, message):
    response = create(alice, url=url)
    assert response.status_code == 400
    assert message in " ".join(response.json()["url"])
    assert not WebhookEndpoint.unscoped.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"event_types": ["session.exploded"]},
        {"event_types": "session.ended"},
        {"enabled": "perhaps"},
        {"description": "x" * 201},
        {"secret": "whsec_mine"},
        {"id": 5},
    ],
)
def test_other_bad_input_is_a_400(alice, body):
    response = create(alice, url="https://hooks.example.com/x", **body)
    assert response.status_code == 400, response.json()
    assert set(response.json()) <= {*body, "secret", "non_field_errors"}


def test_update_and_delete(alice):
    endpoint = WebhookEndpointFactory(tenant=alice.tenant, enabled=False, disabled_reason="410")
    url = f"{ENDPOINTS}{endpoint.pk}/"
    response = alice.client.patch(url, {"enabled": True, "event_types": []}, format="json")
    assert response.status_code == 200
    assert response.json()["enabled"] is True
    assert response.json()["disabled_reason"] == ""
    bad = alice.client.patch(url, {"url": "https://192.168.1.1/x"}, format="json")
    assert bad.status_code == 400
    assert "private address" in bad.json()["url"][0]
    assert alice.client.delete(url).status_code == 204
    assert not WebhookEndpoint.unscoped.filter(pk=endpoint.pk).exists()


def test_rotate_secret_returns_a_new_one(alice):
    endpoint = WebhookEndpointFactory(tenant=alice.tenant)
    before = decrypt_str(endpoint.secret_encrypted)
    response = alice.client.post(f"{ENDPOINTS}{endpoint.pk}/rotate-secret/")
    assert response.status_code == 200
    secret = response.json()["secret"]
    assert secret.startswith("whsec_")
    assert secret != before
    endpoint.refresh_from_db()
    assert decrypt_str(endpoint.secret_encrypted) == secret


def test_a_test_event_is_delivered_signed(
    alice, webhook_receiver, django_capture_on_commit_callbacks
):
    created = create(alice, url=webhook_receiver.url()).json()
    with django_capture_on_commit_callbacks(execute=False):
        response = alice.client.post(f"{ENDPOINTS}{created['id']}/test/")
    assert response.status_code == 202
    queued = response.json()
    assert (queued["event_type"], queued["status"]) == ("webhook.test", "pending")
    with tenant_scope(alice.tenant.pk):
        delivery_attempt(delivery_id=queued["id"])
    (request,) = webhook_receiver.requests
    headers = {k.lower(): v for k, v in request["headers"].items()}
    payload = Webhook(created["secret"]).verify(request["body"], headers)
    assert payload["type"] == "webhook.test"
    assert payload["data"] == {"endpoint_id": created["id"]}


def test_deliveries_list_detail_with_attempts_and_filters(alice):
    endpoint = WebhookEndpointFactory(tenant=alice.tenant)
    failed = WebhookDeliveryFactory(
        tenant=alice.tenant, endpoint=endpoint, status="failed", event_type="session.ended",
        attempt_count=2, last_status_code=500, last_error="webhook answered HTTP 500",
    )  # fmt: skip
    WebhookAttemptFactory(
        tenant=alice.tenant, delivery=failed, number=1, status_code=500, outcome="failed",
        error="webhook answered HTTP 500", retry_after_seconds=5.2,
    )  # fmt: skip
    WebhookAttemptFactory(
        tenant=alice.tenant, delivery=failed, number=2, status_code=500, outcome="failed",
        error="webhook answered HTTP 500",
    )  # fmt: skip
    ok = WebhookDeliveryFactory(tenant=alice.tenant, endpoint=endpoint)
    listed = alice.client.get(DELIVERIES).json()
    assert [d["id"] for d in listed["results"]] == [ok.pk, failed.pk]
    assert "payload" not in listed["results"][0]
    only_failed = alice.client.get(DELIVERIES, {"status": "failed"}).json()["results"]
    assert [d["id"] for d in only_failed] == [failed.pk]
    by_type = alice.client.get(DELIVERIES, {"event_type": "session.ended"}).json()["results"]
    assert [d["id"] for d in by_type] == [failed.pk]
    detail = alice.client.get(f"{DELIVERIES}{failed.pk}/").json()
    assert detail["webhook_id"] == failed.msg_id
    assert detail["payload"] == failed.payload
    seen = [
        (a["number"], a["status_code"], a["outcome"], a["retry_after_seconds"])
        for a in detail["attempts"]
    ]
    assert seen == [(1, 500, "failed", 5.2), (2, 500, "failed", None)]


@pytest.mark.parametrize(
    "query", [{"status": "lost"}, {"endpoint": "x"}, {"endpoint": ""}, {"event_type": "nope"}]
)
def test_bad_delivery_filters_are_a_400(alice, query):
    response = alice.client.get(DELIVERIES, query)
    assert response.status_code == 400
    assert set(response.json()) == set(query)


def test_replay_keeps_the_webhook_id_and_adds_an_attempt(
    alice, webhook_receiver, django_capture_on_commit_callbacks
):
    created = create(alice, url=webhook_receiver.url()).json()
    endpoint = WebhookEndpoint.unscoped.get(pk=created["id"])
    sent = WebhookDeliveryFactory(tenant=alice.tenant, endpoint=endpoint, status="pending",
                                  attempt_count=0, round_attempts=0,
                                  next_attempt_at=timezone.now())  # fmt: skip
    with tenant_scope(alice.tenant.pk):
        delivery_attempt(delivery_id=sent.pk)
    assert delivery(sent.pk).status == "succeeded"
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = alice.client.post(f"{DELIVERIES}{sent.pk}/replay/")
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    assert len(callbacks) == 1  # its wake-up, once committed
    with tenant_scope(alice.tenant.pk):
        delivery_attempt(delivery_id=sent.pk)
    first, second = webhook_receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == sent.msg_id
    assert first["body"] == second["body"]
    detail = alice.client.get(f"{DELIVERIES}{sent.pk}/").json()
    assert detail["status"] == "succeeded"
    assert [a["number"] for a in detail["attempts"]] == [1, 2]


def test_replay_of_a_delivery_in_progress_is_a_409(alice):
    pending = WebhookDeliveryFactory(tenant=alice.tenant, status="pending")
    response = alice.client.post(f"{DELIVERIES}{pending.pk}/replay/")
    assert response.status_code == 409
    assert response.json()["code"] == "delivery_in_progress"


def test_another_tenants_endpoints_and_deliveries_are_404(alice, charlie):
    theirs = WebhookEndpointFactory(tenant=charlie.tenant)
    their_delivery = WebhookDeliveryFactory(tenant=charlie.tenant, endpoint=theirs)
    for method, url in [
        ("get", f"{ENDPOINTS}{theirs.pk}/"),
        ("patch", f"{ENDPOINTS}{theirs.pk}/"),
        ("delete", f"{ENDPOINTS}{theirs.pk}/"),
        ("post", f"{ENDPOINTS}{theirs.pk}/rotate-secret/"),
        ("post", f"{ENDPOINTS}{theirs.pk}/test/"),
        ("get", f"{DELIVERIES}{their_delivery.pk}/"),
        ("post", f"{DELIVERIES}{their_delivery.pk}/replay/"),
    ]:
        response = getattr(alice.client, method)(url, {}, format="json")
        assert response.status_code == 404, (method, url)
    assert alice.client.get(ENDPOINTS).json()["results"] == []
    assert alice.client.get(DELIVERIES, {"endpoint": theirs.pk}).json()["results"] == []
    assert WebhookEndpoint.unscoped.filter(pk=theirs.pk).exists()
    assert WebhookDelivery.unscoped.get(pk=their_delivery.pk).status == "succeeded"
