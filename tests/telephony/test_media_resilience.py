"""An upstream goAway or drop in the middle of a phone call: the call resumes, and the
caller hears no dead air beyond the budget of docs/telephony.md ("Upstream faults")."""

from __future__ import annotations

import itertools

import pytest

from tests.telephony.carrier_sim import FRAME, CarrierSim, tone_ulaw
from tests.telephony.conftest import dial, make_line
from tests.telephony.test_media_calls import call_row, quiet, until

pytestmark = pytest.mark.django_db(transaction=True)

# A reply plays without a hole longer than this (a frame late, a scheduler hiccup).
SMOOTH = 0.1


@pytest.fixture
def live_emulator_settings():
    return {"pace": 1.0}


def gaps(sim: CarrierSim) -> list[tuple[float, float]]:
    """(when, how long) of every silence between two played frames beyond one frame."""
    times = [p.at for p in sim.played]
    return [(a, b - a - FRAME) for a, b in itertools.pairwise(times) if b - a > FRAME * 1.5]


async def test_a_go_away_while_the_caller_speaks_resumes_and_loses_none_of_it(
    alice, phone_settings, live_emulator
):
    # The switch within 0.3 s of the goAway (by default at a random moment of 5 s, spread
    # so that a fleet does not reconnect at once): while the caller still speaks.
    phone_settings.LIVE_GO_AWAY_SPREAD = 0.3
    line = await make_line(alice.tenant)
    # goAway 4 s in, while the caller says their second turn; the deadline is at 8 s.
    live_emulator.fail_next(lifetime=8.0, go_away_notice=4.0)
    sim, token = await dial(line)
    await sim.start(token)
    sim.say(tone_ulaw(500, freq=440))  # turn 1: answered, its handle saved
    await until(lambda: sim.played, timeout=10)
    await quiet(sim, 0.3, timeout=10)
    answered = len(sim.media())
    sim.say(tone_ulaw(3000, freq=440))  # turn 2: the goAway comes in the middle of it
    await until(lambda: len(live_emulator.recorder.sessions) >= 2, timeout=15)
    await until(lambda: len(sim.media()) > answered, timeout=15)  # its answer
    await quiet(sim, 1.0, timeout=15)
    await sim.hang_up()
    first, second = live_emulator.recorder.sessions[:2]
    assert first.go_away_sent
    assert first.close_code == 1000
    # Resumed from turn 1's handle; turn 2 went up again whole, at real time.
    assert second.resumed
    assert second.client_setup["sessionResumption"]["handle"] == first.handles[-1]
    assert second.input_transcripts[0] in ("[3.0 s at 440 Hz]", "[3.1 s at 440 Hz]")
    # Both answers played whole, with no hole in either: the one hole is turn 2 itself.
    holes = [g for g in gaps(sim) if g[1] > SMOOTH]
    assert len(holes) == 1, holes
    # Each answer echoes its turn as heard: the two played whole (the echo is as long).
    heard = [float(t[1:4]) for t in (first.input_transcripts[0], second.input_transcripts[0])]
    assert len(sim.played) * FRAME == pytest.approx(sum(heard), abs=0.15)
    assert sim.clears == []
    call = await call_row(sim.call_sid)
    assert call.session.reconnects == 1
    assert call.session.end_reason == "caller_hung_up"


SPEECH = 2.0


async def test_a_drop_mid_reply_resumes_within_the_dead_air_budget(
    alice, phone_settings, live_emulator
):
    line = await make_line(alice.tenant)
    # The TCP connection dies 1 s into the answer (speech 2 s + the end-of-turn silence).
    live_emulator.fail_next(drop_at=SPEECH + 1.8)
    sim, token = await dial(line)
    await sim.start(token)
    sim.say(tone_ulaw(int(SPEECH * 1000), freq=440))
    await until(lambda: len(live_emulator.recorder.sessions) >= 2, timeout=15)
    await until(lambda: live_emulator.recorder.sessions[1].input_transcripts, timeout=15)
    before = len(sim.media())  # the turn asked again has been heard: its answer follows
    await until(lambda: len(sim.media()) > before, timeout=15)
    await quiet(sim, 1.0, timeout=15)
    await sim.hang_up()
    holes = [g for g in gaps(sim) if g[1] > SMOOTH]
    # One hole, where the drop was: the first reconnect's jitter (at most
    # LIVE_RECONNECT_BASE), the handshake, the turn in flight asked again (its speech at
    # real time, 0.3 s of silence before it and the end-of-turn silence) and the answer.
    assert len(holes) == 1, holes
    budget = phone_settings.LIVE_RECONNECT_BASE + SPEECH + 0.3 + 0.5 + 0.7
    assert holes[0][1] <= budget, (holes, budget)
    first = live_emulator.recorder.sessions[0]
    assert first.close_code == 1006  # the drop really happened
    call = await call_row(sim.call_sid)
    assert call.session.reconnects == 1
    assert call.session.end_reason == "caller_hung_up"
