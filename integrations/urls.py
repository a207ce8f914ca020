"""REST routes of integrator webhooks (docs/api.md)."""

from __future__ import annotations

from django.urls import URLPattern, path

from integrations.apis import (
    WebhookDeliveryDetailApi,
    WebhookDeliveryListApi,
    WebhookDeliveryReplayApi,
    WebhookEndpointDetailApi,
    WebhookEndpointListCreateApi,
    WebhookEndpointRotateSecretApi,
    WebhookEndpointTestApi,
)

urlpatterns: list[URLPattern] = [
    path("webhooks/endpoints/", WebhookEndpointListCreateApi.as_view(), name="webhook-endpoints"),
    path(
        "webhooks/endpoints/<int:pk>/",
        WebhookEndpointDetailApi.as_view(),
        name="webhook-endpoint-detail",
    ),
    path(
        "webhooks/endpoints/<int:pk>/rotate-secret/",
        WebhookEndpointRotateSecretApi.as_view(),
        name="webhook-endpoint-rotate-secret",
    ),
    path(
        "webhooks/endpoints/<int:pk>/test/",
        WebhookEndpointTestApi.as_view(),
        name="webhook-endpoint-test",
    ),
    path("webhooks/deliveries/", WebhookDeliveryListApi.as_view(), name="webhook-deliveries"),
    path(
        "webhooks/deliveries/<int:pk>/",
        WebhookDeliveryDetailApi.as_view(),
        name="webhook-delivery-detail",
    ),
    path(
        "webhooks/deliveries/<int:pk>/replay/",
        WebhookDeliveryReplayApi.as_view(),
        name="webhook-delivery-replay",
    ),
]
