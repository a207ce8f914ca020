"""Inbound calls: what the platform answers the carrier's webhooks with (docs/telephony.md).

``voice``: a call comes in. Refused (unknown number, number or agent disabled, a limit):
a polite sentence and a hang-up, with a PhoneCall row saying why. Accepted: a ringing
PhoneCall, a single-use client token bound to the CallSid, and TwiML connecting the call
to the media stream with that token. ``stream-ended``: the stream is over; the call's row
says what comes next. Called inside the account's tenant scope, after the signature check.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from sessions.services import voice_session_admission, voice_session_resume_token_reissue
from sessions.tokens import client_token_issue
from telephony.calls import (
    RESTARTING,
    phone_call_claim_restart,
    phone_call_ended,
    phone_call_new_nonce,
    phone_call_nonce_matches,
)
from telephony.carrier import dial_twiml
from telephony.models import CarrierAccount, PhoneCall, PhoneNumber
from telephony.selectors import phone_call_by_sid, phone_number_for_call
from telephony.twiml import twiml_connect, twiml_hangup, twiml_refusal
from voice_platform.rest_input import unstorable_text

# The media stream's WebSocket path (telephony/routing.py).
STREAM_PATH = "/ws/v1/phone/twilio/{public_id}"
# Session end reasons that are a fault, not anyone's choice: the caller hears an apology.
FAULT_REASONS = frozenset(
    {
        "server_error",
        "server_restart",
        "upstream_error",
        "upstream_unavailable",
        "upstream_busy",
        "upstream_lost",
        "stream_failed",
    }
)
# A ringing call whose stream ended: the stream never started a session.
STREAM_FAILED = "stream_failed"
# The session's end when the agent's end_call / transfer_call could not be carried out.
ACTION_FAILED = "action_failed"
# The query parameter of the ``<Connect action>`` URL holding the answer's nonce.
NONCE_PARAM = "n"
END_USER_ID_MAX = 200  # ClientToken.end_user_id


@dataclass(frozen=True)
class PhoneUrls:
    """The account's URLs: ``voice`` goes into the carrier's number configuration."""

    voice: str
    stream_ended: str
    stream: str


def phone_urls(*, base_url: str, public_id: uuid.UUID) -> PhoneUrls:
    """The account's URLs under ``base_url`` (``https://host``): the stream's scheme is
    ``wss`` for an https base and ``ws`` for http."""
    base = base_url.rstrip("/")
    kwargs = {"account_id": public_id}
    scheme, _, rest = base.partition("://")
    ws_base = ("wss://" if scheme == "https" else "ws://") + rest
    return PhoneUrls(
        voice=base + reverse("phone-twilio-voice", kwargs=kwargs),
        stream_ended=base + reverse("phone-twilio-stream-ended", kwargs=kwargs),
        stream=ws_base + STREAM_PATH.format(public_id=public_id),
    )


@dataclass(frozen=True)
class CallParams:
    call_sid: str
    from_number: str
    to_number: str


def call_params_parse(params: Mapping[str, str], *, need_to: bool = True) -> CallParams | str:
    """The carrier's parameters, or why they are unusable (answered 400)."""
    call_sid = params.get("CallSid", "")
    to_number = params.get("To", "")
    from_number = params.get("From", "")
    if not call_sid:
        return "Missing CallSid."
    if need_to and not to_number:
        return "Missing To."
    limits = {"CallSid": (call_sid, 64), "To": (to_number, 32), "From": (from_number, 32)}
    for name, (value, limit) in limits.items():
        if len(value) > limit:
            return f"{name} is longer than {limit} characters."
        if unstorable_text(value):
            return f"{name} holds characters that cannot be stored."
    return CallParams(call_sid=call_sid, from_number=from_number, to_number=to_number)


@dataclass(frozen=True)
class CallAnswer:
    twiml: str
    reason: str  # "" when accepted
    call: PhoneCall | None  # None for a duplicate: the first call's row is not this one


def _refusal_reason(*, account: CarrierAccount, number: PhoneNumber | None) -> str | None:
    if number is None:
        return "unknown_number"
    if not number.enabled:
        return "number_disabled"
    agent = number.agent
    if agent.enabled and (agent.response_modality != "AUDIO" or not agent.vad_enabled):
        return "agent_not_for_phone"  # changed since the number was attached to it
    return voice_session_admission(tenant=account.tenant, agent=agent)


@transaction.atomic  # the admission check's capacity lock is transaction-scoped
def phone_call_answer(*, account: CarrierAccount, params: CallParams, base_url: str) -> CallAnswer:
    """Answer a call coming in on ``account`` (its signature already checked)."""
    number = phone_number_for_call(account=account, to_number=params.to_number)
    reason = _refusal_reason(account=account, number=number)
    try:
        with transaction.atomic():  # a savepoint: the CallSid's uniqueness is the check
            call = PhoneCall.objects.create(
                tenant_id=account.tenant_id,
                call_sid=params.call_sid,
                phone_number=number,
                from_number=params.from_number,
                to_number=params.to_number,
                status=PhoneCall.Status.REFUSED if reason else PhoneCall.Status.RINGING,
                reason=reason or "",
                ended_at=timezone.now() if reason else None,
            )
    except IntegrityError:
        # The carrier retried, or someone replays a signed request: the first row stays,
        # and no second credential is minted for the same call.
        duplicate = "duplicate_call"
        return CallAnswer(twiml=twiml_refusal(reason=duplicate), reason=duplicate, call=None)
    if reason is not None or number is None:  # (a missing number always has a reason)
        reason = reason or "unknown_number"
        return CallAnswer(twiml=twiml_refusal(reason=reason), reason=reason, call=call)
    return CallAnswer(
        twiml=_connect(account=account, call=call, number=number, base_url=base_url),
        reason="",
        call=call,
    )


def _with_nonce(url: str, nonce: str) -> str:
    return f"{url}?{NONCE_PARAM}={nonce}"


def _connect(
    *, account: CarrierAccount, call: PhoneCall, number: PhoneNumber, base_url: str,
    greet: bool = True,
) -> str:  # fmt: skip
    """A fresh single-use credential bound to the call, and the TwiML connecting it."""
    carrier_greets = number.greeting_by == PhoneNumber.GreetingBy.CARRIER
    issued = client_token_issue(
        tenant=account.tenant,
        agent=number.agent,
        end_user_id=(call.from_number or "anonymous")[:END_USER_ID_MAX],
        expire_seconds=settings.PHONE_TOKEN_SECONDS,
        new_session_expire_seconds=settings.PHONE_TOKEN_SECONDS,
        uses=1,
        metadata={
            "channel": "phone",
            "call_sid": call.call_sid,
            "phone_call_id": call.pk,
            "from": call.from_number,
            "to": call.to_number,
            "greeting": "" if carrier_greets else number.greeting,
        },
    )
    urls = phone_urls(base_url=base_url, public_id=account.public_id)
    return twiml_connect(
        stream_url=urls.stream,
        action_url=_with_nonce(urls.stream_ended, phone_call_new_nonce(call=call)),
        token=issued.raw,
        greeting=number.greeting if carrier_greets and greet else "",
    )


def phone_call_after_stream(
    *, account: CarrierAccount, call_sid: str, nonce: str = "", base_url: str = ""
) -> str:
    """The TwiML for a call whose media stream has ended, from its row's state. ``nonce``:
    the one in the ``<Connect action>`` URL the carrier requested; only the newest answer's
    may change the call (Twilio's signatures carry no nonce of their own: a captured signed
    request could otherwise be replayed)."""
    call = phone_call_by_sid(account=account, call_sid=call_sid)
    if call is None:
        return twiml_hangup()
    newest = phone_call_nonce_matches(call=call, nonce=nonce)
    cut = call.status == PhoneCall.Status.CONNECTED or (
        call.status == PhoneCall.Status.RINGING and call.reason == RESTARTING
    )
    if cut and newest and base_url:
        # A stopping process (a deploy) or the network cut the stream (our own closes
        # record the call's end first): connect the call again, through the balancer, to
        # a running process, resuming its session where it was.
        if phone_call_claim_restart(call_id=call.pk):
            if call.status == PhoneCall.Status.RINGING and call.phone_number is not None:
                return _connect(  # its stream never started: a new credential, same call
                    account=account, call=call, number=call.phone_number, base_url=base_url,
                    greet=False,
                )  # fmt: skip
            resume = (
                voice_session_resume_token_reissue(session_id=call.session_id)
                if call.session_id is not None
                else None
            )
            if resume is not None:
                urls = phone_urls(base_url=base_url, public_id=account.public_id)
                return twiml_connect(
                    stream_url=urls.stream,
                    action_url=_with_nonce(urls.stream_ended, phone_call_new_nonce(call=call)),
                    token=resume,
                    resume=True,
                )
        # Its session is over, or it was connected again too many times: sorry.
        phone_call_ended(call_sid=call.call_sid, reason=STREAM_FAILED)
        return twiml_hangup(sorry=True)
    if cut:
        return twiml_hangup()  # an older answer's request (a replay): the call is left alone
    if (
        call.status == PhoneCall.Status.ENDED
        and call.reason == ACTION_FAILED
        and call.action == PhoneCall.Action.TRANSFER
        and call.action_target
    ):
        return dial_twiml(call.action_target)  # the carrier's API failed: TwiML does it
    if call.status == PhoneCall.Status.REFUSED:
        return twiml_refusal(reason=call.reason)
    if call.status == PhoneCall.Status.RINGING:
        # The stream ended before it started a session (the carrier could not reach the
        # stream, or it closed before ``start``): record it, apologise.
        if newest:
            phone_call_ended(call_sid=call.call_sid, reason=STREAM_FAILED)
        return twiml_hangup(sorry=True)
    if call.status == PhoneCall.Status.ENDED:
        return twiml_hangup(sorry=call.reason in FAULT_REASONS)
    return twiml_hangup()
