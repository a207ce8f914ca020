"""REST: integrator webhook endpoints and their deliveries under /api/v1/webhooks/
(docs/api.md, docs/webhooks.md). Thin: parse, call a service, serialize."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.request import Request
from rest_framework.response import Response

from integrations.models import WebhookDelivery, WebhookEndpoint
from integrations.selectors import delivery_list, endpoint_list
from integrations.serializers import (
    WebhookDeliveryDetailSerializer,
    WebhookDeliveryFilterSerializer,
    WebhookDeliverySerializer,
    WebhookEndpointCreatedSerializer,
    WebhookEndpointSerializer,
    WebhookSecretSerializer,
)
from integrations.services import (
    EndpointInvalid,
    delivery_replay_now,
    endpoint_create,
    endpoint_rotate_secret,
    endpoint_send_test,
    endpoint_update,
)
from voice_platform.rest_input import validate_query
from voice_platform.tenancy.api import TenantAPIView, TenantViewMixin, request_tenant


class DeliveryInProgress(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The delivery is still pending or being delivered: nothing to replay yet."
    default_code = "delivery_in_progress"


def _invalid(exc: EndpointInvalid) -> exceptions.ValidationError:
    return exceptions.ValidationError({exc.field: [str(exc)]})


class WebhookEndpointListCreateApi(TenantViewMixin, generics.ListCreateAPIView[WebhookEndpoint]):
    serializer_class = WebhookEndpointSerializer

    def get_queryset(self) -> QuerySet[WebhookEndpoint]:
        return endpoint_list(tenant=request_tenant(self.request))

    @extend_schema(responses={201: WebhookEndpointCreatedSerializer})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Create an endpoint; the answer holds its signing secret, shown this once."""
        serializer = WebhookEndpointSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            endpoint, secret = endpoint_create(
                tenant=request_tenant(request), **serializer.validated_data
            )
        except EndpointInvalid as exc:
            raise _invalid(exc) from exc
        endpoint.secret = secret  # type: ignore[attr-defined]
        return Response(
            WebhookEndpointCreatedSerializer(endpoint).data, status=status.HTTP_201_CREATED
        )


class WebhookEndpointDetailApi(
    TenantViewMixin, generics.RetrieveUpdateDestroyAPIView[WebhookEndpoint]
):
    serializer_class = WebhookEndpointSerializer

    def get_queryset(self) -> QuerySet[WebhookEndpoint]:
        return endpoint_list(tenant=request_tenant(self.request))

    def perform_update(self, serializer: WebhookEndpointSerializer) -> None:  # type: ignore[override]
        try:
            serializer.instance = endpoint_update(
                endpoint=self.get_object(), **serializer.validated_data
            )
        except EndpointInvalid as exc:
            raise _invalid(exc) from exc


class WebhookEndpointRotateSecretApi(TenantAPIView):
    @extend_schema(request=None, responses={200: WebhookSecretSerializer})
    def post(self, request: Request, pk: int) -> Response:
        """A new signing secret (shown once); the old one stops being used at once."""
        endpoint = get_object_or_404(endpoint_list(tenant=request_tenant(request)), pk=pk)
        return Response({"secret": endpoint_rotate_secret(endpoint=endpoint)})


class WebhookEndpointTestApi(TenantAPIView):
    @extend_schema(request=None, responses={202: WebhookDeliverySerializer})
    def post(self, request: Request, pk: int) -> Response:
        """Queue a ``webhook.test`` event to this endpoint."""
        endpoint = get_object_or_404(endpoint_list(tenant=request_tenant(request)), pk=pk)
        delivery = endpoint_send_test(endpoint=endpoint)
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(parameters=[WebhookDeliveryFilterSerializer])
class WebhookDeliveryListApi(TenantViewMixin, generics.ListAPIView[WebhookDelivery]):
    """Deliveries, newest first."""

    serializer_class = WebhookDeliverySerializer

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        filters = validate_query(WebhookDeliveryFilterSerializer, self.request.query_params)
        return delivery_list(
            tenant=request_tenant(self.request),
            endpoint_id=filters.get("endpoint"),
            event_type=filters.get("event_type"),
            status=filters.get("status"),
        )


class WebhookDeliveryDetailApi(TenantViewMixin, generics.RetrieveAPIView[WebhookDelivery]):
    serializer_class = WebhookDeliveryDetailSerializer

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        return delivery_list(tenant=request_tenant(self.request)).prefetch_related("attempts")


class WebhookDeliveryReplayApi(TenantAPIView):
    @extend_schema(
        request=None,
        responses={
            202: WebhookDeliverySerializer,
            409: OpenApiResponse(description="Still pending or being delivered."),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        """Send a finished delivery again: the same webhook-id and body, new attempts."""
        delivery = get_object_or_404(delivery_list(tenant=request_tenant(request)), pk=pk)
        if not delivery_replay_now(delivery=delivery):
            raise DeliveryInProgress()
        delivery.refresh_from_db()
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
