"""The carrier's webhooks (docs/telephony.md). Thin: check the signature, parse, call a
service, answer TwiML. Every refusal of the request itself is plain text: 404 for an
unknown or disabled account (the carrier door answers it), 403 for a missing or wrong
signature or another account's AccountSid, 400 for unusable parameters; never a 500."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from telephony.inbound import (
    NONCE_PARAM,
    CallParams,
    call_params_parse,
    phone_call_after_stream,
    phone_call_answer,
)
from telephony.models import CarrierAccount
from telephony.selectors import carrier_account_by_public_id, carrier_account_tenant_id
from telephony.signatures import carrier_signature_valid, public_base_url
from voice_platform.tenancy.inbound import NOT_FOUND_TEXT, carrier_tenant_view

TWIML = "text/xml; charset=utf-8"
FORBIDDEN_TEXT = "Invalid carrier signature.\n"


def _plain(text: str, status: int) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


def _checked(request: HttpRequest, account_id: Any) -> CarrierAccount | HttpResponse:
    """The account, once the request is proven to be its carrier's; else the refusal."""
    account = carrier_account_by_public_id(public_id=account_id)
    if account is None:  # disabled between the door's lookup and this one
        return _plain(NOT_FOUND_TEXT, 404)
    if not carrier_signature_valid(account=account, request=request):
        return _plain(FORBIDDEN_TEXT, 403)
    if request.POST.get("AccountSid", "") != account.account_sid:
        return _plain("The request is not for this carrier account.\n", 403)
    return account


@csrf_exempt  # the carrier's signature is this endpoint's authentication
@require_POST
@carrier_tenant_view(carrier_account_tenant_id)
def carrier_voice(request: HttpRequest, account_id: Any) -> HttpResponse:
    """A call comes in: connect it to its agent, or refuse it politely."""
    account = _checked(request, account_id)
    if isinstance(account, HttpResponse):
        return account
    params = call_params_parse(request.POST)
    if not isinstance(params, CallParams):
        return _plain(params + "\n", 400)
    answer = phone_call_answer(
        account=account, params=params, base_url=public_base_url(request=request)
    )
    return HttpResponse(answer.twiml, content_type=TWIML)


@csrf_exempt  # the carrier's signature is this endpoint's authentication
@require_POST
@carrier_tenant_view(carrier_account_tenant_id)
def carrier_stream_ended(request: HttpRequest, account_id: Any) -> HttpResponse:
    """The call's media stream ended (the ``<Connect action>``): what the caller hears next."""
    account = _checked(request, account_id)
    if isinstance(account, HttpResponse):
        return account
    params = call_params_parse(request.POST, need_to=False)
    if not isinstance(params, CallParams):
        return _plain(params + "\n", 400)
    twiml = phone_call_after_stream(
        account=account,
        call_sid=params.call_sid,
        nonce=str(request.GET.get(NONCE_PARAM, "")),
        base_url=public_base_url(request=request),
    )
    return HttpResponse(twiml, content_type=TWIML)
