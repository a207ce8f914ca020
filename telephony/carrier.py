"""How ``end_call`` and ``transfer_call`` reach the carrier (docs/telephony.md).

``carrier_client_for`` gives the client of a carrier account: ``TwilioCarrierClient`` (the
``twilio`` package's REST client: the call's TwiML is replaced while it is in progress) or,
when ``PHONE_CARRIER_CLIENT == "recording"``, ``RecordingCarrierClient``, the test double
that sends nothing and appends each request to ``recorded_requests``.

Failures surface as ``CarrierError`` with a short reason that names no credential: the
auth token exists only inside the REST client, which never logs it.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import requests
from django.conf import settings
from django.utils import timezone
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from voice_platform.crypto import DecryptionError, decrypt_str

if TYPE_CHECKING:
    from twilio.http import HttpClient

    from telephony.models import CarrierAccount

# The carrier's REST API answers in well under a second; a stalled request must not hold
# the media stream's database thread for long.
REQUEST_TIMEOUT_SECONDS = 10.0


class CarrierError(Exception):
    """The carrier did not do what was asked. The message is short and holds no secret."""


class CarrierClient(Protocol):
    def hang_up(self, *, call_sid: str) -> None: ...

    def transfer(self, *, call_sid: str, to_number: str) -> None: ...


def dial_twiml(to_number: str) -> str:
    """``<Response><Dial>to_number</Dial></Response>``, built with the TwiML builder."""
    response = VoiceResponse()
    response.dial(to_number)
    return str(response)


class TwilioCarrierClient:
    """Twilio's REST API: ``POST /Accounts/<sid>/Calls/<call sid>.json``."""

    def __init__(
        self, *, account_sid: str, auth_token: str, http_client: HttpClient | None = None
    ) -> None:
        # ``http_client`` is for tests (a recording fake): no network in the test suite.
        self.twilio = Client(
            account_sid,
            auth_token,
            http_client=http_client or TwilioHttpClient(timeout=REQUEST_TIMEOUT_SECONDS),
        )

    def hang_up(self, *, call_sid: str) -> None:
        self._update(call_sid, status="completed")

    def transfer(self, *, call_sid: str, to_number: str) -> None:
        # New TwiML for the call in progress: its <Connect><Stream> ends, and it dials.
        self._update(call_sid, twiml=dial_twiml(to_number))

    def _update(self, call_sid: str, **fields: str) -> None:
        try:
            self.twilio.calls(call_sid).update(**fields)
        except TwilioRestException as exc:
            # Built from the status and Twilio's error code only: the exception's own text
            # repeats the request's URI and the carrier's message verbatim.
            # The SDK puts the HTTP status in ``code`` when the body has no error code.
            code = f", error {exc.code}" if exc.code and exc.code != exc.status else ""
            raise CarrierError(
                f"the carrier refused the request (HTTP {exc.status}{code})"
            ) from exc
        except requests.RequestException as exc:
            raise CarrierError(f"the carrier could not be reached ({type(exc).__name__})") from exc
        except TwilioException as exc:
            raise CarrierError(f"the carrier request failed ({type(exc).__name__})") from exc


@dataclass(frozen=True)
class CarrierRequest:
    """What a ``RecordingCarrierClient`` was asked to send."""

    account_sid: str
    call_sid: str
    action: Literal["hang_up", "transfer"]
    to_number: str
    at: dt.datetime


# Every request of every RecordingCarrierClient in this process, oldest first (tests clear
# it). Appended under a lock: the media streams of several calls may act at once.
recorded_requests: list[CarrierRequest] = []
_recorded_lock = threading.Lock()


class RecordingCarrierClient:
    """The test double: records each request in ``recorded_requests``, sends nothing."""

    def __init__(self, *, account_sid: str) -> None:
        self.account_sid = account_sid

    def hang_up(self, *, call_sid: str) -> None:
        self._record(call_sid, "hang_up", "")

    def transfer(self, *, call_sid: str, to_number: str) -> None:
        self._record(call_sid, "transfer", to_number)

    def _record(self, call_sid: str, action: Literal["hang_up", "transfer"], to: str) -> None:
        request = CarrierRequest(
            account_sid=self.account_sid, call_sid=call_sid, action=action, to_number=to,
            at=timezone.now(),
        )  # fmt: skip
        with _recorded_lock:
            recorded_requests.append(request)


def carrier_client_for(*, account: CarrierAccount) -> CarrierClient:
    """The client that acts on ``account``'s calls. Raises ``CarrierError`` when its auth
    token cannot be decrypted (the encryption keys changed)."""
    if settings.PHONE_CARRIER_CLIENT == "recording":
        return RecordingCarrierClient(account_sid=account.account_sid)
    try:
        auth_token = decrypt_str(account.auth_token_encrypted)
    except DecryptionError as exc:
        raise CarrierError("the carrier account's auth token cannot be decrypted") from exc
    return TwilioCarrierClient(account_sid=account.account_sid, auth_token=auth_token)
