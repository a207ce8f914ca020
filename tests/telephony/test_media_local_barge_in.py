"""A reply the model generated faster than real time still plays from the platform's queue
after the model's turn is over (no ``interrupted`` can come for it): the caller's speech
stops it all the same."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from tests.telephony.carrier_sim import tone_ulaw
from tests.telephony.conftest import dial, make_line
from tests.telephony.test_media_calls import until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live_emulator_settings():
    return {"pace": 5.0}  # replies generated five times faster than they play


async def test_caller_speech_stops_a_finished_reply_still_playing(
    alice, phone_settings, live_emulator
):
    line = await make_line(alice.tenant)
    await database_sync_to_async(type(line.number).unscoped.filter(pk=line.number.pk).update)(
        greeting="Welcome to the harbour office of the bay, how can we help you today?"
    )
    sim, token = await dial(line)
    await sim.start(token)
    record = None
    async with asyncio.timeout(15):  # the model's turn is complete, its audio still plays
        while record is None or not any(
            (m.get("serverContent") or {}).get("turnComplete") for m in record.sent
        ):
            await asyncio.sleep(0.05)
            record = (
                live_emulator.recorder.sessions[-1] if live_emulator.recorder.sessions else None
            )
    await until(lambda: len(sim.played) >= 25)
    sim.say(tone_ulaw(150, freq=440))  # a click, a cough: not a barge-in
    await asyncio.sleep(0.6)
    assert sim.clears == []
    sim.say(tone_ulaw(600, freq=440))
    await until(lambda: sim.clears, timeout=5)
    assert not any(
        (m.get("serverContent") or {}).get("interrupted") for m in record.sent
    )  # the model never said interrupted: the platform stopped the reply itself
    played_at_clear = len([p for p in sim.played if p.at <= sim.clears[0]])
    await asyncio.sleep(0.5)
    assert len([p for p in sim.played if p.at <= sim.clears[0] + 0.5]) <= played_at_clear + 1
    await sim.hang_up()
    # The reply was ~10 s long (the echo of the greeting's cue, 60 ms a character): the
    # caller heard its first seconds only.
    assert played_at_clear * 0.02 < 5
