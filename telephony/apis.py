"""REST: carrier accounts, phone numbers and calls under /api/v1/phone/
(docs/telephony.md). Thin: parse, call a service or selector, serialize. Calls are
read-only (written by the carrier's webhooks and the media stream)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response

from telephony.models import CarrierAccount, PhoneCall, PhoneNumber
from telephony.selectors import carrier_account_list, phone_call_list, phone_number_list
from telephony.serializers import (
    CarrierAccountCreateSerializer,
    CarrierAccountSerializer,
    PhoneCallSerializer,
    PhoneNumberSerializer,
)
from telephony.services import (
    carrier_account_create,
    carrier_account_delete,
    carrier_account_update,
    phone_number_create,
    phone_number_delete,
    phone_number_update,
)
from voice_platform.tenancy.api import TenantViewMixin, request_tenant


class CarrierAccountListCreateApi(TenantViewMixin, generics.ListCreateAPIView[CarrierAccount]):
    serializer_class = CarrierAccountCreateSerializer

    def get_queryset(self) -> QuerySet[CarrierAccount]:
        return carrier_account_list(tenant=request_tenant(self.request))

    @extend_schema(responses={201: CarrierAccountSerializer})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Add a carrier account; the answer holds the URLs to paste into Twilio."""
        serializer = CarrierAccountCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        account = carrier_account_create(
            tenant=request_tenant(request), **serializer.validated_data
        )
        out = CarrierAccountSerializer(account, context=self.get_serializer_context())
        return Response(out.data, status=status.HTTP_201_CREATED)


class CarrierAccountDetailApi(
    TenantViewMixin, generics.RetrieveUpdateDestroyAPIView[CarrierAccount]
):
    serializer_class = CarrierAccountSerializer

    def get_queryset(self) -> QuerySet[CarrierAccount]:
        return carrier_account_list(tenant=request_tenant(self.request))

    def perform_update(self, serializer: CarrierAccountSerializer) -> None:  # type: ignore[override]
        serializer.instance = carrier_account_update(
            account=self.get_object(), **serializer.validated_data
        )

    def perform_destroy(self, instance: CarrierAccount) -> None:
        carrier_account_delete(account=instance)


class PhoneNumberListCreateApi(TenantViewMixin, generics.ListCreateAPIView[PhoneNumber]):
    serializer_class = PhoneNumberSerializer

    def get_queryset(self) -> QuerySet[PhoneNumber]:
        return phone_number_list(tenant=request_tenant(self.request))

    def perform_create(self, serializer: PhoneNumberSerializer) -> None:  # type: ignore[override]
        serializer.instance = phone_number_create(
            tenant=request_tenant(self.request), **serializer.validated_data
        )


class PhoneNumberDetailApi(TenantViewMixin, generics.RetrieveUpdateDestroyAPIView[PhoneNumber]):
    serializer_class = PhoneNumberSerializer

    def get_queryset(self) -> QuerySet[PhoneNumber]:
        return phone_number_list(tenant=request_tenant(self.request))

    def perform_update(self, serializer: PhoneNumberSerializer) -> None:  # type: ignore[override]
        serializer.instance = phone_number_update(
            phone_number=self.get_object(), **serializer.validated_data
        )

    def perform_destroy(self, instance: PhoneNumber) -> None:
        phone_number_delete(phone_number=instance)


class PhoneCallListApi(TenantViewMixin, generics.ListAPIView[PhoneCall]):
    """Calls, newest first."""

    serializer_class = PhoneCallSerializer

    def get_queryset(self) -> QuerySet[PhoneCall]:
        return phone_call_list(tenant=request_tenant(self.request))


class PhoneCallDetailApi(TenantViewMixin, generics.RetrieveAPIView[PhoneCall]):
    serializer_class = PhoneCallSerializer

    def get_queryset(self) -> QuerySet[PhoneCall]:
        return phone_call_list(tenant=request_tenant(self.request))
