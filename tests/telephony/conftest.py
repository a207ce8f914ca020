"""Phone calls end to end: the carrier's webhook, then a simulated carrier's media stream
against the real consumer, the real SDK and the emulator."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from twilio.request_validator import RequestValidator

from tests.factories import CARRIER_AUTH_TOKEN, AgentFactory, PhoneNumberFactory
from tests.sessions.conftest import (  # noqa: F401 (shared fixtures)
    celery_worker_process,
    live_settings,
    no_leaked_tasks,
    tools_ready,
    two_daphnes,
    webhook_receiver,
)
from tests.telephony.carrier_sim import CarrierSim

HOST = "testserver"


@dataclass
class PhoneLine:
    number: Any  # telephony.models.PhoneNumber
    agent: Any

    @property
    def account(self) -> Any:
        return self.number.carrier_account


@database_sync_to_async
def make_line(tenant: Any, **agent_fields: Any) -> PhoneLine:
    agent = AgentFactory(
        tenant=tenant, input_transcription=True, output_transcription=True, **agent_fields
    )
    number = PhoneNumberFactory(tenant=tenant, agent=agent)
    return PhoneLine(number=number, agent=agent)


def signed_post(path: str, params: dict[str, str], *, token: str = CARRIER_AUTH_TOKEN) -> Any:
    """POST as Twilio does: form-encoded, signed over the URL and the parameters."""
    url = f"http://{HOST}{path}"
    signature = RequestValidator(token).compute_signature(url, params)
    return Client().post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)


def voice_request(line: PhoneLine, *, call_sid: str, caller: str = "+14155550100") -> Any:
    """The carrier's signed "a call comes in" request for ``line``'s number."""
    account = line.account
    return signed_post(
        f"/phone/twilio/{account.public_id}/voice",
        {"CallSid": call_sid, "AccountSid": account.account_sid, "From": caller,
         "To": line.number.number, "Direction": "inbound"},
    )  # fmt: skip


@database_sync_to_async
def answer_call(line: PhoneLine, *, call_sid: str, caller: str = "+14155550100") -> str:
    """The carrier's "a call comes in" request; returns the credential of the TwiML answer
    (and keeps its ``<Connect action>`` path in ``ACTIONS[call_sid]``)."""
    response = voice_request(line, call_sid=call_sid, caller=caller)
    assert response.status_code == 200, response.content
    root = ET.fromstring(response.content)  # noqa: S314 (our own server's answer)
    parameter = root.find("./Connect/Stream/Parameter[@name='token']")
    assert parameter is not None, response.content
    ACTIONS[call_sid] = str(root.find("./Connect").get("action")).split(HOST, 1)[1]  # type: ignore[union-attr]
    return str(parameter.get("value"))


# The path (with its nonce) of each answered call's ``<Connect action>``, by CallSid.
ACTIONS: dict[str, str] = {}


def stream_ended(line: PhoneLine, call_sid: str) -> Any:
    """The carrier's request after a call's stream ended, to the newest answer's URL."""
    account = line.account
    return signed_post(ACTIONS[call_sid], {"CallSid": call_sid, "AccountSid": account.account_sid})


@pytest.fixture
def phone_settings(live_settings):  # noqa: F811 (the imported fixture)
    live_settings.PHONE_CARRIER_CLIENT = "recording"
    live_settings.PHONE_DTMF_GAP = 0.3
    live_settings.PHONE_END_CALL_WAIT = 10.0
    return live_settings


async def dial(line: PhoneLine) -> tuple[CarrierSim, str]:
    """A call answered by the platform, its stream open but not yet started."""
    call_sid = "CA" + uuid.uuid4().hex
    token = await answer_call(line, call_sid=call_sid)
    sim = await CarrierSim.dial(
        line.account.public_id, call_sid=call_sid, account_sid=line.account.account_sid
    )
    await sim.connected()
    return sim, token
