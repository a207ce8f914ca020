"""A deploy restarts the server process holding a phone call's stream (SIGTERM): the call
is connected again by the carrier's next request, to a running process, and its session
resumes there: the same session, its upstream resumed from the last handle
(docs/telephony.md, "Restarts")."""

from __future__ import annotations

import asyncio
import signal
import uuid
import xml.etree.ElementTree as ET

import pytest
import requests
from twilio.request_validator import RequestValidator

from telephony.models import PhoneCall
from tests.factories import CARRIER_AUTH_TOKEN
from tests.telephony.carrier_sim import CarrierSim, tone_ulaw
from tests.telephony.conftest import make_line
from tests.telephony.test_media_calls import call_row, quiet, until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live_emulator_settings():
    return {"pace": 1.0}


def carrier_post(port: int, path: str, params: dict[str, str]) -> ET.Element:
    """The carrier's signed request to one server process (the balancer's choice)."""
    url = f"http://127.0.0.1:{port}{path}"
    signature = RequestValidator(CARRIER_AUTH_TOKEN).compute_signature(url, params)
    response = requests.post(url, data=params, headers={"X-Twilio-Signature": signature},
                             timeout=10)  # fmt: skip
    assert response.status_code == 200, response.text
    return ET.fromstring(response.content)  # noqa: S314 (our own server's answer)


def stream_of(twiml: ET.Element) -> tuple[str, str, str]:
    """(stream URL, credential name, credential) of a ``<Connect><Stream>`` answer."""
    stream = twiml.find("./Connect/Stream")
    assert stream is not None, ET.tostring(twiml)
    parameter = stream.find("./Parameter")
    assert parameter is not None
    return str(stream.get("url")), str(parameter.get("name")), str(parameter.get("value"))


async def test_sigterm_reconnects_the_call_on_another_process_and_resumes_its_session(
    alice, phone_settings, live_emulator, two_daphnes
):
    (proc_a, port_a), (_, port_b) = two_daphnes
    line = await make_line(alice.tenant)
    account = line.account
    call = {"CallSid": "CA" + uuid.uuid4().hex, "AccountSid": account.account_sid,
            "From": "+14155550100", "To": line.number.number}  # fmt: skip
    voice = f"/phone/twilio/{account.public_id}/voice"
    answer = await asyncio.to_thread(carrier_post, port_a, voice, call)
    url, name, credential = stream_of(answer)
    first_credential = credential
    assert name == "token"
    assert f":{port_a}/" in url
    sim = await CarrierSim.dial_url(url, call_sid=call["CallSid"], account_sid=account.account_sid)
    await sim.connected()
    await sim.start(credential)
    sim.say(tone_ulaw(500, freq=440))  # turn 1, answered on process A
    await until(lambda: sim.played, timeout=10)
    await quiet(sim, 0.3)
    proc_a.send_signal(signal.SIGTERM)  # a deploy
    await sim.wait_closed(timeout=15)
    await sim.close()
    row = await call_row(call["CallSid"])
    assert (row.status, row.reason) == (PhoneCall.Status.CONNECTED, "server_restart")

    # The stream ended: Twilio asks the <Connect action> what next, through the balancer.
    action = answer.find("./Connect")
    assert action is not None
    path = str(action.get("action")).split(f":{port_a}", 1)[1]
    again = await asyncio.to_thread(carrier_post, port_b, path, call)
    url, name, credential = stream_of(again)
    assert name == "resume"
    assert f":{port_b}/" in url
    resumed = await CarrierSim.dial_url(url, call_sid=call["CallSid"],
                                        account_sid=account.account_sid)  # fmt: skip
    await resumed.connected()
    await resumed.start(credential, name="resume")
    resumed.say(tone_ulaw(1500, freq=440))  # turn 2, answered on process B
    await until(lambda: resumed.played, timeout=15)
    await quiet(resumed, 0.8)
    # While the call goes on, a replay of either credential is refused (the first answer's
    # token is spent; the resume token was rotated when the new stream took the session)
    # and the call is left alone.
    for spent, kind in ((first_credential, "token"), (credential, "resume")):
        replay = await CarrierSim.dial_url(url, call_sid=call["CallSid"],
                                           account_sid=account.account_sid)  # fmt: skip
        await replay.connected()
        await replay.start(spent, name=kind)
        assert await replay.wait_closed() == 1000
        await replay.close()
        assert not [e for _, e in replay.received]
    row = await call_row(call["CallSid"])
    assert (row.status, row.reason) == (PhoneCall.Status.CONNECTED, "")
    # And a replay of the carrier's signed stream-ended request gets no credential.
    again_answer = await asyncio.to_thread(carrier_post, port_b, path, call)
    assert again_answer.find("./Connect") is None
    await resumed.hang_up()
    first, last = live_emulator.recorder.sessions[0], live_emulator.recorder.sessions[-1]
    # The same conversation: process B's upstream resumed from turn 1's handle.
    assert last.resumed
    assert last.client_setup["sessionResumption"]["handle"] in first.handles
    assert last.input_transcripts[0].startswith(("[1.5 s", "[1.6 s"))

    row = await call_row(call["CallSid"])
    assert (row.status, row.reason) == (PhoneCall.Status.ENDED, "caller_hung_up")
    assert row.session.end_reason == "caller_hung_up"
