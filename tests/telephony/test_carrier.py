"""The carrier clients: the Twilio REST requests end_call and transfer_call send (through a
fake HTTP client: no network), their failures, and the recording test double."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.utils import timezone
from twilio.http import HttpClient
from twilio.http.response import Response

from telephony import carrier
from telephony.carrier import (
    CarrierError,
    CarrierRequest,
    RecordingCarrierClient,
    TwilioCarrierClient,
    carrier_client_for,
)
from tests.factories import CARRIER_AUTH_TOKEN, CarrierAccountFactory

ACCOUNT_SID = "AC" + "1" * 32
CALL_SID = "CA" + "2" * 32


class FakeTwilioHttp(HttpClient):
    """Records each request the SDK makes and answers with a canned response (or raises)."""

    def __init__(
        self,
        *,
        status: int = 200,
        body: dict[str, Any] | None = None,
        raises: Exception | None = None,
    ) -> None:
        super().__init__(logging.getLogger("tests.fake_twilio"), is_async=False)
        self.status = status
        self.body = body if body is not None else {"sid": CALL_SID, "status": "completed"}
        self.raises = raises
        self.requests: list[dict[str, Any]] = []

    def request(  # type: ignore[override]
        self, method: str, uri: str, params: Any = None, data: Any = None, headers: Any = None,
        auth: Any = None, timeout: Any = None, allow_redirects: bool = False,
    ) -> Response:  # fmt: skip
        self.requests.append({"method": method, "uri": uri, "data": dict(data or {}), "auth": auth})
        if self.raises is not None:
            raise self.raises
        return Response(self.status, json.dumps(self.body))


def twilio_client(http: FakeTwilioHttp) -> TwilioCarrierClient:
    return TwilioCarrierClient(
        account_sid=ACCOUNT_SID, auth_token=CARRIER_AUTH_TOKEN, http_client=http
    )


@pytest.fixture(autouse=True)
def _no_recorded_requests() -> Any:
    carrier.recorded_requests.clear()
    yield
    carrier.recorded_requests.clear()


# --- Twilio ----------------------------------------------------------------------------------


def test_it_hangs_up_by_posting_status_completed_to_the_call():
    http = FakeTwilioHttp()
    twilio_client(http).hang_up(call_sid=CALL_SID)
    [sent] = http.requests
    assert sent["method"] == "POST"
    url = urlsplit(sent["uri"])
    assert url.scheme == "https"
    assert url.hostname == "api.twilio.com"
    assert url.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{CALL_SID}.json"
    assert sent["data"] == {"Status": "completed"}
    assert sent["auth"] == (ACCOUNT_SID, CARRIER_AUTH_TOKEN)


def test_it_transfers_by_replacing_the_calls_twiml_with_a_dial():
    http = FakeTwilioHttp(body={"sid": CALL_SID, "status": "in-progress"})
    twilio_client(http).transfer(call_sid=CALL_SID, to_number="+14155550199")
    [sent] = http.requests
    assert sent["method"] == "POST"
    assert urlsplit(sent["uri"]).path.endswith(f"/Accounts/{ACCOUNT_SID}/Calls/{CALL_SID}.json")
    assert set(sent["data"]) == {"Twiml"}
    root = ET.fromstring(sent["data"]["Twiml"])  # noqa: S314 (our own TwiML)
    assert root.tag == "Response"
    assert [(child.tag, child.text) for child in root] == [("Dial", "+14155550199")]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (404, {"code": 20404, "message": "The requested resource was not found", "status": 404},
         "HTTP 404, error 20404"),
        (400, {"code": 21220, "message": "Call is not in-progress. Cannot redirect.",
               "status": 400}, "HTTP 400, error 21220"),
        (401, {"code": 20003, "message": "Authenticate", "status": 401}, "HTTP 401, error 20003"),
        (503, {}, "HTTP 503"),
    ],
)  # fmt: skip
def test_it_turns_a_carrier_refusal_into_a_short_carrier_error(status, body, expected, caplog):
    http = FakeTwilioHttp(status=status, body=body)
    with caplog.at_level(logging.DEBUG), pytest.raises(CarrierError) as raised:
        twilio_client(http).hang_up(call_sid=CALL_SID)
    assert str(raised.value) == f"the carrier refused the request ({expected})"
    assert CARRIER_AUTH_TOKEN not in str(raised.value)
    assert CARRIER_AUTH_TOKEN not in caplog.text


@pytest.mark.parametrize(
    "error", [requests.ConnectionError("connection refused"), requests.Timeout("read timed out")]
)
def test_it_turns_a_network_failure_into_a_carrier_error(error):
    http = FakeTwilioHttp(raises=error)
    with pytest.raises(CarrierError, match=f"could not be reached \\({type(error).__name__}\\)"):
        twilio_client(http).transfer(call_sid=CALL_SID, to_number="+14155550199")
    assert len(http.requests) == 1


def test_carrier_client_for_uses_the_accounts_decrypted_auth_token(alice, settings):
    settings.PHONE_CARRIER_CLIENT = "twilio"
    account = CarrierAccountFactory(tenant=alice.tenant, account_sid=ACCOUNT_SID)
    client = carrier_client_for(account=account)
    assert isinstance(client, TwilioCarrierClient)
    http = FakeTwilioHttp()
    client.twilio.http_client = http  # no network: the SDK sends through this instead
    client.hang_up(call_sid=CALL_SID)
    assert http.requests[0]["auth"] == (ACCOUNT_SID, CARRIER_AUTH_TOKEN)


def test_carrier_client_for_an_undecryptable_token_is_a_carrier_error(alice, settings):
    settings.PHONE_CARRIER_CLIENT = "twilio"
    account = CarrierAccountFactory(tenant=alice.tenant, auth_token_encrypted="not-a-token")
    with pytest.raises(CarrierError, match="cannot be decrypted"):
        carrier_client_for(account=account)


# --- the recording double --------------------------------------------------------------------


def test_recording_client_is_chosen_by_the_setting_and_records_each_request(alice, settings):
    settings.PHONE_CARRIER_CLIENT = "recording"
    account = CarrierAccountFactory(tenant=alice.tenant, account_sid=ACCOUNT_SID)
    client = carrier_client_for(account=account)
    assert isinstance(client, RecordingCarrierClient)
    before = timezone.now()
    client.hang_up(call_sid=CALL_SID)
    client.transfer(call_sid="CA" + "3" * 32, to_number="+14155550199")
    assert carrier.recorded_requests == [
        CarrierRequest(account_sid=ACCOUNT_SID, call_sid=CALL_SID, action="hang_up",
                       to_number="", at=carrier.recorded_requests[0].at),
        CarrierRequest(account_sid=ACCOUNT_SID, call_sid="CA" + "3" * 32, action="transfer",
                       to_number="+14155550199", at=carrier.recorded_requests[1].at),
    ]  # fmt: skip
    assert before <= carrier.recorded_requests[0].at <= carrier.recorded_requests[1].at


def test_recording_client_sends_nothing(alice, settings, monkeypatch):
    settings.PHONE_CARRIER_CLIENT = "recording"

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the recording client made an HTTP request")

    monkeypatch.setattr(requests.Session, "send", no_network)
    account = CarrierAccountFactory(tenant=alice.tenant)
    carrier_client_for(account=account).hang_up(call_sid=CALL_SID)
    assert len(carrier.recorded_requests) == 1
