"""A call's credential, keys, hang-up and transfer, and its end, through the simulated
carrier against the platform and the emulator."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET

import pytest
from channels.db import database_sync_to_async

from telephony import carrier
from telephony.media import KEYPAD_TEXT
from telephony.models import PhoneCall
from tests.telephony.carrier_sim import CarrierSim, tone_ulaw
from tests.telephony.conftest import answer_call, dial, make_line, stream_ended, voice_request
from tests.telephony.test_media_calls import call_row, quiet, transcript, until
from tools.services import agent_tool_create
from voice_platform.tenancy.scope import tenant_scope

pytestmark = pytest.mark.django_db(transaction=True)

END_CALL_HZ, TRANSFER_HZ = 600, 500
TRANSFER_TO = "+14155550199"


@pytest.fixture
def live_emulator_settings():
    # A caller's tone at these pitches is a spoken request for the tool.
    return {
        "pace": 1.0,
        "audio_tool_calls": {
            END_CALL_HZ: "call end_call {}",
            TRANSFER_HZ: "call transfer_call " + json.dumps({"to": TRANSFER_TO}),
        },
    }


async def test_a_bad_a_foreign_or_a_reused_credential_is_refused(alice, phone_settings):
    line = await make_line(alice.tenant)
    # A made-up credential: the stream is closed and nothing is sent; a stream that
    # proved nothing leaves the call it names alone (still ringing for its real stream).
    sim, _token = await dial(line)
    await sim.start("ct_" + "x" * 43)
    assert await sim.wait_closed() == 1000
    await sim.close()
    assert [e for _, e in sim.received] == []
    assert (await call_row(sim.call_sid)).status == PhoneCall.Status.RINGING
    # The credential of another call: bound to its call, so refused here.
    other, other_token = await dial(line)
    sim, token = await dial(line)
    await sim.start(other_token)
    assert await sim.wait_closed() == 1000
    await sim.close()
    assert (await call_row(sim.call_sid)).status == PhoneCall.Status.RINGING
    # Its own credential from another account's stream (start.accountSid): refused too.
    stranger = await CarrierSim.dial(line.account.public_id, call_sid=sim.call_sid)
    await stranger.connected()
    await stranger.start(token)
    assert await stranger.wait_closed() == 1000
    await stranger.close()
    assert (await call_row(sim.call_sid)).status == PhoneCall.Status.RINGING
    # Used once by its own call: a second stream of that call is refused.
    await other.start(other_token)
    await until(lambda: len(other.received) == 0 and other._chunk > 10)
    again = await CarrierSim.dial(
        line.account.public_id, call_sid=other.call_sid, account_sid=line.account.account_sid
    )
    await again.connected()
    await again.start(other_token)
    assert await again.wait_closed() == 1000
    await again.close()
    assert [e for _, e in again.received] == []
    await other.hang_up()
    assert (await call_row(other.call_sid)).reason == "caller_hung_up"


async def test_media_before_start_is_ignored_and_a_wrong_media_format_is_refused(
    alice, phone_settings
):
    line = await make_line(alice.tenant)
    sim, token = await dial(line)
    await sim._send("media", media={"track": "inbound", "payload": "//8="})
    await sim.comm.send_to(text_data="not json")
    await sim.start(token, media_format={"encoding": "audio/l16", "sampleRate": 16000})
    assert sim.sent_before_start == []
    assert await sim.wait_closed() == 1000
    await sim.close()
    assert (await call_row(sim.call_sid)).reason == "unsupported_media_format"


async def test_keys_pressed_reach_the_model_as_text_and_the_transcript(
    alice, phone_settings, live_emulator
):
    line = await make_line(alice.tenant)
    sim, token = await dial(line)
    await sim.start(token)
    for digit in "123#":  # "#" ends the entry at once
        await sim.dtmf(digit)
    await sim.dtmf("4")
    await sim.dtmf("9")  # these two go after PHONE_DTMF_GAP (0.3 s) without a key
    await until(lambda: len(sim.media()) > 0)
    await quiet(sim, 0.8)
    record = live_emulator.recorder.last()
    heard = json.dumps(record.messages)
    assert "keypad: 1 2 3 #" in heard
    assert "keypad: 4 9" in heard
    await sim.hang_up()
    entries = await transcript((await call_row(sim.call_sid)).session_id)
    keys = [text for role, kind, text in entries if (role, kind) == ("user", "text")]
    assert keys == [KEYPAD_TEXT.format(keys="1 2 3 #"), KEYPAD_TEXT.format(keys="4 9")]


@database_sync_to_async
def allow_tools(line, **policies: dict) -> None:
    from tools.services import tool_sync_registry

    tool_sync_registry()
    with tenant_scope(line.agent.tenant_id):
        for name, policy in policies.items():
            agent_tool_create(tenant=line.agent.tenant, agent=line.agent, tool_name=name,
                              policy=policy)  # fmt: skip


@pytest.mark.parametrize(
    ("pitch", "action", "reason"),
    [(END_CALL_HZ, "hang_up", "agent_hung_up"), (TRANSFER_HZ, "transfer", "call_transferred")],
)
async def test_end_call_and_transfer_call_act_after_the_sentence_played(
    alice, tools_ready, phone_settings, live_emulator, pitch, action, reason
):
    line = await make_line(alice.tenant)
    await allow_tools(line, end_call={}, transfer_call={"allowed_numbers": [TRANSFER_TO]})
    carrier.recorded_requests.clear()
    sim, token = await dial(line)
    await sim.start(token)
    sim.say(tone_ulaw(800, freq=pitch))
    assert await sim.wait_closed(timeout=20) == 1000
    await sim.close()
    requests = [r for r in carrier.recorded_requests if r.call_sid == sim.call_sid]
    assert [(r.action, r.to_number) for r in requests] == [
        (action, TRANSFER_TO if action == "transfer" else "")
    ]
    # The sentence after the tool ("Result of ...") was sent and played before the act.
    assert sim.media()
    assert len(sim.played) == len(sim.media())
    assert sim.marks_echoed
    assert all(played for _, _, played in sim.marks_echoed)
    call = await call_row(sim.call_sid)
    assert (call.action, call.reason) == (action, reason)
    assert call.action_done_at is not None
    assert call.session.end_reason == reason


@database_sync_to_async
def limit_sessions(tenant, count: int) -> None:
    type(tenant).objects.filter(pk=tenant.pk).update(max_concurrent_sessions=count)


async def test_stop_ends_the_session_with_a_reason_and_releases_its_slot(
    alice, phone_settings, live_emulator
):
    line = await make_line(alice.tenant)
    await limit_sessions(alice.tenant, 1)
    first, token = await dial(line)
    await first.start(token)
    await until(lambda: first._chunk > 10)
    # The tenant's one slot is taken: the next call is refused politely.
    refused = await database_sync_to_async(voice_request)(
        line, call_sid="CA" + "1" * 32, caller="+14155550111"
    )
    assert b"<Hangup" in refused.content
    assert b"<Say" in refused.content
    await first.hang_up()
    call = await call_row(first.call_sid)
    assert (call.status, call.reason, call.session.end_reason) == (
        PhoneCall.Status.ENDED,
        "caller_hung_up",
        "caller_hung_up",
    )
    # The slot is free again: a new call is answered and streams.
    second, token = await dial(line)
    await second.start(token)
    second.say(tone_ulaw(600, freq=440))
    await until(lambda: second.media(), what="the second call's reply")
    await second.hang_up()
    assert (await call_row(second.call_sid)).reason == "caller_hung_up"
    await asyncio.sleep(0)


async def test_a_second_answer_for_one_call_is_refused_without_a_credential(alice, phone_settings):
    line = await make_line(alice.tenant)
    await answer_call(line, call_sid="CA" + "2" * 32)
    again = await database_sync_to_async(voice_request)(
        line, call_sid="CA" + "2" * 32, caller="+14155550100"
    )
    assert b"<Hangup" in again.content
    assert b"Parameter" not in again.content


async def test_a_carrier_action_that_fails_ends_the_call_and_twiml_does_the_transfer(
    alice, tools_ready, phone_settings, live_emulator, monkeypatch
):
    import telephony.media

    monkeypatch.setattr(telephony.media, "phone_call_action_perform", lambda claimed: "failed")
    line = await make_line(alice.tenant)
    await allow_tools(line, transfer_call={"allowed_numbers": [TRANSFER_TO]})
    sim, token = await dial(line)
    await sim.start(token)
    sim.say(tone_ulaw(800, freq=TRANSFER_HZ))
    assert await sim.wait_closed(timeout=20) == 1000
    await sim.close()
    call = await call_row(sim.call_sid)
    assert (call.action, call.reason, call.session.end_reason) == (
        "transfer",
        "action_failed",
        "action_failed",
    )
    # The carrier then asks what next: the transfer, done by TwiML.
    response = await database_sync_to_async(stream_ended)(line, sim.call_sid)
    assert f"<Dial>{TRANSFER_TO}</Dial>".encode() in response.content


async def test_a_stream_dropped_without_stop_is_connected_again_and_resumes(
    alice, phone_settings, live_emulator
):
    line = await make_line(alice.tenant)
    sim, token = await dial(line)
    await sim.start(token)
    sim.say(tone_ulaw(500, freq=440))
    await until(lambda: sim.played)
    await quiet(sim, 0.3)
    await sim.comm.disconnect()  # the network, not the caller: no ``stop``
    await sim.close()
    call = await call_row(sim.call_sid)
    assert (call.status, call.reason) == (PhoneCall.Status.CONNECTED, "server_restart")
    assert call.session.status == "reconnecting"  # resumable
    account = line.account
    response = await database_sync_to_async(stream_ended)(line, sim.call_sid)
    twiml = ET.fromstring(response.content)  # noqa: S314 (our own server's answer)
    parameter = twiml.find("./Connect/Stream/Parameter")
    assert parameter is not None
    assert parameter.get("name") == "resume"
    again = await CarrierSim.dial(
        account.public_id, call_sid=sim.call_sid, account_sid=account.account_sid
    )
    await again.connected()
    await again.start(str(parameter.get("value")), name="resume")
    again.say(tone_ulaw(700, freq=440))
    await until(lambda: again.played, timeout=10)
    await again.hang_up()
    call = await call_row(sim.call_sid)
    assert (call.status, call.reason) == (PhoneCall.Status.ENDED, "caller_hung_up")
    assert call.session.end_reason == "caller_hung_up"
    assert live_emulator.recorder.sessions[-1].resumed  # the same conversation upstream


async def test_a_stream_reaching_a_stopping_process_is_answered_again_elsewhere(
    alice, phone_settings, live_emulator, monkeypatch
):
    import telephony.media

    line = await make_line(alice.tenant)
    sim, token = await dial(line)
    monkeypatch.setattr(telephony.media, "draining", lambda: True)
    await sim.start(token)
    assert await sim.wait_closed() == 1000
    await sim.close()
    call = await call_row(sim.call_sid)
    assert (call.status, call.reason) == (PhoneCall.Status.RINGING, "server_restart")
    monkeypatch.setattr(telephony.media, "draining", lambda: False)  # "another process"
    response = await database_sync_to_async(stream_ended)(line, sim.call_sid)
    twiml = ET.fromstring(response.content)  # noqa: S314 (our own server's answer)
    parameter = twiml.find("./Connect/Stream/Parameter")
    assert parameter is not None
    assert parameter.get("name") == "token"
    again = await CarrierSim.dial(
        line.account.public_id, call_sid=sim.call_sid, account_sid=line.account.account_sid
    )
    await again.connected()
    await again.start(str(parameter.get("value")))
    again.say(tone_ulaw(600, freq=440))
    await until(lambda: again.played, timeout=10)
    await again.hang_up()
    call = await call_row(sim.call_sid)
    assert (call.status, call.reason) == (PhoneCall.Status.ENDED, "caller_hung_up")


@database_sync_to_async
def switch_agent(line, **fields) -> None:
    type(line.agent).unscoped.filter(pk=line.agent.pk).update(**fields)


@pytest.mark.parametrize("change", [{"response_modality": "TEXT"}, {"vad_enabled": False}])
async def test_an_agent_changed_so_it_cannot_take_a_call_is_refused_politely(
    alice, phone_settings, change
):
    line = await make_line(alice.tenant)
    await switch_agent(line, **change)
    response = await database_sync_to_async(voice_request)(
        line, call_sid="CA" + "3" * 32, caller="+14155550100"
    )
    assert b"<Hangup" in response.content
    assert b"<Connect" not in response.content
    call = await call_row("CA" + "3" * 32)
    assert (call.status, call.reason) == (PhoneCall.Status.REFUSED, "agent_not_for_phone")
