"""Phone calls against the platform and the emulator, through a simulated carrier that
speaks the Media Streams protocol in real time (tests/telephony/carrier_sim.py)."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest
from channels.db import database_sync_to_async

from sessions.models import TranscriptEntry, VoiceSession
from telephony.models import PhoneCall
from tests.telephony.carrier_sim import FRAME, CarrierSim, tone_ulaw
from tests.telephony.conftest import dial, make_line

pytestmark = pytest.mark.django_db(transaction=True)

LEAD_FRAMES = 10  # PHONE_PLAYBACK_LEAD (0.2 s) in 20 ms frames


def pitch_hz(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    crossings = np.count_nonzero(np.signbit(samples[1:]) != np.signbit(samples[:-1]))
    return crossings / 2 / (samples.size / rate)


async def until(predicate, timeout: float = 15, what: str = "") -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def quiet(sim: CarrierSim, seconds: float, timeout: float = 20) -> None:
    """Until no media has come for ``seconds`` (the reply is over) and the buffer played."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        while True:
            last = sim.received[-1][0] if sim.received else 0.0
            if sim.media() and loop.time() - last >= seconds and not sim.buffer_depth[-1]:
                return
            await asyncio.sleep(0.05)


@database_sync_to_async
def call_row(call_sid: str) -> PhoneCall:
    return PhoneCall.unscoped.select_related("session").get(call_sid=call_sid)


@database_sync_to_async
def transcript(session_id) -> list[tuple[str, str, str]]:
    return [
        (e.role, e.kind, e.text)
        for e in TranscriptEntry.unscoped.filter(session_id=session_id).order_by("seq")
    ]


async def test_a_call_hears_the_caller_at_16_khz_and_answers_in_paced_mulaw_frames(
    alice, phone_settings, live_emulator
):
    line = await make_line(alice.tenant)
    sim, token = await dial(line)
    await sim.start(token)
    assert sim.sent_before_start == []  # nothing before ``start``
    sim.say(tone_ulaw(1000, freq=440))
    await until(lambda: sim.media(), what="the reply")
    await quiet(sim, 0.8)
    uplinked = sim._chunk * FRAME
    await sim.hang_up()

    record = live_emulator.recorder.last()
    # The turn the emulator heard: its length and pitch (8 kHz audio played at 16 kHz
    # would be heard at half the pitch and twice the length) ...
    heard = re.match(r"\[(\d+\.\d) s at (\d+) Hz\]", record.input_transcripts[0])
    assert heard is not None, record.input_transcripts
    assert 0.9 <= float(heard.group(1)) <= 1.2
    assert int(heard.group(2)) == 440
    # ... all the audio the carrier sent, at 16 kHz (the resampler holds back ~0.1 s) ...
    assert uplinked - 0.25 <= record.audio_seconds <= uplinked + 0.01
    # ... and its energy: the tone's (RMS 0.25/sqrt 2 of full scale) for one second.
    tone_rms = 0.25 * 32767 / np.sqrt(2)
    energy_seconds = record.audio_sum_squares / (tone_rms**2 * 16_000)
    assert 0.9 <= energy_seconds <= 1.1

    frames = sim.media()
    assert all(len(frame) == 160 for _, frame in frames)  # 20 ms of 8 kHz μ-law each
    # The reply is the emulator's echo of the tone: still 440 Hz at 8 kHz.
    played = sim.played_pcm()
    voiced = played[: len(played) // 2 * 2]
    assert abs(pitch_hz(voiced[1600:-1600], 8000) - 440) < 15
    # Real-time pace: never more than the lead ahead of the carrier's playback clock.
    first = frames[0][0]
    for index, (at, _) in enumerate(frames):
        assert at - first >= (index - LEAD_FRAMES - 2) * FRAME, (index, at - first)
    assert max(sim.buffer_depth) <= LEAD_FRAMES + 2
    assert len(frames) * FRAME == pytest.approx(
        frames[-1][0] - first, abs=LEAD_FRAMES * FRAME + 0.1
    )

    call = await call_row(sim.call_sid)
    assert (call.status, call.reason) == (PhoneCall.Status.ENDED, "caller_hung_up")
    assert call.session.status == VoiceSession.Status.ENDED
    assert call.session.end_reason == "caller_hung_up"


@pytest.fixture
def live_emulator_settings():
    # Captions in small pieces, as the service sends them (the cut follows the audio).
    return {"pace": 1.0, "text_parts": 60}


GREETING = (
    "Thank you for calling the harbour office, where every ferry, every mooring and "
    "every weather warning of the whole bay is kept."
)


async def test_caller_speech_over_the_reply_clears_the_carrier_and_cuts_the_transcript(
    alice, phone_settings, live_emulator
):
    line = await make_line(alice.tenant)
    await database_sync_to_async(type(line.number).unscoped.filter(pk=line.number.pk).update)(
        greeting=GREETING
    )
    sim, token = await dial(line)
    await sim.start(token)
    await until(lambda: len(sim.played) >= 75, what="1.5 s of the greeting played")
    sim.say(tone_ulaw(600, freq=440))
    await until(lambda: sim.clears, what="clear")
    clear_at = sim.clears[0]
    played_before = [p for p in sim.played if p.at < clear_at]
    await asyncio.sleep(0.4)
    after = [at for at, event in sim.received if event.get("event") == "media" and at > clear_at]
    await quiet(sim, 1.0)
    await sim.hang_up()

    record = live_emulator.recorder.last()
    interrupted_at = next(
        at for at, sent in zip(record.sent_at, record.sent, strict=True)
        if (sent.get("serverContent") or {}).get("interrupted")
    )  # fmt: skip
    assert 0 <= clear_at - interrupted_at <= 0.1
    # Nothing of the cut reply after the clear: the next audio is the next turn's.
    assert not [at for at in after if at < clear_at + 0.3]
    call = await call_row(sim.call_sid)
    entries = await transcript(call.session_id)
    spoken = [text for role, kind, text in entries if (role, kind) == ("model", "speech")]
    full = "You said: (The phone call has just been answered. Greet the caller now by saying: "
    cut = spoken[0]
    assert (full + GREETING).startswith(cut)
    assert len(cut) < len(full + GREETING) / 2
    # The caller heard ~played frames of it (the emulator speaks 60 ms per character);
    # the cut ends at the last mark the carrier echoed, at a word's end.
    heard_chars = len(played_before) * FRAME / 0.060
    assert abs(len(cut) - heard_chars) <= 12, (cut, heard_chars)
