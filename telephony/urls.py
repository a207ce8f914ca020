"""Telephony routes: the carrier's webhooks under /phone/ and the REST API under
/api/v1/phone/ (docs/telephony.md, docs/api.md). Included once, at the site root."""

from __future__ import annotations

from django.urls import URLPattern, path

from telephony.apis import (
    CarrierAccountDetailApi,
    CarrierAccountListCreateApi,
    PhoneCallDetailApi,
    PhoneCallListApi,
    PhoneNumberDetailApi,
    PhoneNumberListCreateApi,
)
from telephony.views import carrier_stream_ended, carrier_voice

urlpatterns: list[URLPattern] = [
    path("phone/twilio/<uuid:account_id>/voice", carrier_voice, name="phone-twilio-voice"),
    path(
        "phone/twilio/<uuid:account_id>/stream-ended",
        carrier_stream_ended,
        name="phone-twilio-stream-ended",
    ),
    path(
        "api/v1/phone/carrier-accounts/",
        CarrierAccountListCreateApi.as_view(),
        name="phone-carrier-accounts",
    ),
    path(
        "api/v1/phone/carrier-accounts/<int:pk>/",
        CarrierAccountDetailApi.as_view(),
        name="phone-carrier-account-detail",
    ),
    path("api/v1/phone/numbers/", PhoneNumberListCreateApi.as_view(), name="phone-numbers"),
    path(
        "api/v1/phone/numbers/<int:pk>/",
        PhoneNumberDetailApi.as_view(),
        name="phone-number-detail",
    ),
    path("api/v1/phone/calls/", PhoneCallListApi.as_view(), name="phone-calls"),
    path("api/v1/phone/calls/<int:pk>/", PhoneCallDetailApi.as_view(), name="phone-call-detail"),
]
