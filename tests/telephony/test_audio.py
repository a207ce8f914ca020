"""G.711 mu-law codec and the stateful resamplers of telephony/audio.py (behaviour, not
quality: test_audio_quality.py measures SNR and aliasing)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from telephony.audio import (
    INBOUND_RATE,
    OUTBOUND_RATE,
    ULAW_FRAME_BYTES,
    ULAW_RATE,
    InboundAudio,
    OutboundAudio,
    PcmResampler,
    pcm16_to_ulaw,
    ulaw_to_pcm16,
)

with warnings.catch_warnings():
    # audioop is deprecated (removed in 3.13) but still in 3.11: the reference oracle here.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

# Worst hold-back we promise in the module docstring (measured: ~115 ms and ~73 ms).
MAX_INBOUND_HOLD_BACK_S = 0.120
MAX_OUTBOUND_HOLD_BACK_S = 0.080

ALL_PCM16 = np.arange(-32768, 32768, dtype="<i2").tobytes()


def tone(rate: int, seconds: float, freq: float = 1000.0, amplitude: float = 0.5) -> bytes:
    t = np.arange(round(rate * seconds)) / rate
    return np.rint(amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def noise(samples: int, seed: int = 7) -> bytes:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0, 4000, samples), -32768, 32767).astype("<i2").tobytes()


def in_chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.int64)


# --- G.711 -------------------------------------------------------------------------------


def test_pcm16_to_ulaw_matches_audioop_for_every_pcm16_value() -> None:
    ours = np.frombuffer(pcm16_to_ulaw(ALL_PCM16), dtype=np.uint8)
    oracle = np.frombuffer(audioop.lin2ulaw(ALL_PCM16, 2), dtype=np.uint8)
    mismatched = np.nonzero(ours != oracle)[0] - 32768
    assert mismatched.size == 0, f"PCM values encoded differently: {mismatched[:10]}"


def test_ulaw_to_pcm16_matches_audioop_for_every_code() -> None:
    codes = bytes(range(256))
    assert ulaw_to_pcm16(codes) == audioop.ulaw2lin(codes, 2)


def test_ulaw_round_trip_is_the_identity_on_codes_but_for_negative_zero() -> None:
    # 0x7F is "-0": it decodes to 0, which encodes as the positive zero 0xFF.
    codes = bytes(range(256))
    back = pcm16_to_ulaw(ulaw_to_pcm16(codes))
    assert [i for i in range(256) if back[i] != i] == [0x7F]


def test_pcm16_to_ulaw_rejects_half_a_sample() -> None:
    with pytest.raises(ValueError, match="not whole 16-bit samples"):
        pcm16_to_ulaw(b"\x00\x01\x02")


def test_codecs_answer_empty_for_empty() -> None:
    assert pcm16_to_ulaw(b"") == b""
    assert ulaw_to_pcm16(b"") == b""


# --- streaming: chunked equals whole -----------------------------------------------------


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 16000), (24000, 8000)])
@pytest.mark.parametrize("chunk_ms", [20, 7.375])
def test_resampling_in_chunks_equals_resampling_the_whole_signal(
    in_rate: int, out_rate: int, chunk_ms: float
) -> None:
    signal = np.frombuffer(noise(in_rate * 2), dtype="<i2")
    whole = PcmResampler(in_rate, out_rate)
    expected = np.concatenate([whole.process(signal), whole.flush()])
    chunked = PcmResampler(in_rate, out_rate)
    size = round(in_rate * chunk_ms / 1000)
    parts = [chunked.process(signal[i : i + size]) for i in range(0, len(signal), size)]
    actual = np.concatenate([*parts, chunked.flush()])
    assert len(actual) == len(expected) == len(signal) * out_rate // in_rate
    assert np.array_equal(actual, expected)


def test_inbound_audio_in_twilio_frames_equals_one_conversion_of_the_whole_call() -> None:
    ulaw = pcm16_to_ulaw(noise(ULAW_RATE * 3))
    whole = InboundAudio().convert(ulaw)
    audio = InboundAudio()
    chunked = b"".join(audio.convert(frame) for frame in in_chunks(ulaw, ULAW_FRAME_BYTES))
    assert chunked == whole
    odd = InboundAudio()
    assert b"".join(odd.convert(part) for part in in_chunks(ulaw, 37)) == whole


def test_outbound_audio_keeps_an_odd_byte_for_the_next_chunk() -> None:
    pcm = noise(OUTBOUND_RATE * 2)
    whole = OutboundAudio()
    expected = whole.convert(pcm) + whole.flush()
    audio = OutboundAudio()
    actual = b"".join(audio.convert(part) for part in in_chunks(pcm, 961)) + audio.flush()
    assert actual == expected
    assert len(actual) == len(pcm) // 2 * ULAW_RATE // OUTBOUND_RATE


def test_a_tone_in_20_ms_frames_has_no_click_at_frame_boundaries() -> None:
    """A 1 kHz tone at half scale moves at most A * 2 * pi * f / fs per sample; a click (a
    discontinuity where one chunk meets the next) would jump further than that."""
    ulaw = pcm16_to_ulaw(tone(ULAW_RATE, 2.0))
    audio = InboundAudio()
    out = samples(b"".join(audio.convert(f) for f in in_chunks(ulaw, ULAW_FRAME_BYTES)))
    steady = out[INBOUND_RATE // 10 : -INBOUND_RATE // 10]
    max_step = 0.5 * 32767 * 2 * np.pi * 1000 / INBOUND_RATE
    mu_law_error = 0.05 * 32767 * 0.5  # mu-law's step near half scale is ~3% of the value
    assert np.abs(np.diff(steady)).max() < max_step + mu_law_error


# --- delay --------------------------------------------------------------------------------


def test_inbound_audio_output_keeps_up_with_a_long_call() -> None:
    """Over a minute of 20 ms frames the output lags the input by at most the documented
    hold-back, and never drifts: output + what the filter holds back = input duration."""
    audio = InboundAudio()
    resampler = PcmResampler(ULAW_RATE, INBOUND_RATE)  # the same filter, to ask its delay
    ulaw = pcm16_to_ulaw(tone(ULAW_RATE, 0.02))
    pcm = np.frombuffer(ulaw_to_pcm16(ulaw), dtype="<i2")
    out_samples = resampled = 0
    worst = 0.0
    for frames_in in range(1, 60 * 50 + 1):
        out_samples += len(audio.convert(ulaw)) // 2
        worst = max(worst, frames_in * 0.02 - out_samples / INBOUND_RATE)
        resampled += len(resampler.process(pcm))
        expected = frames_in * 0.02 * INBOUND_RATE
        assert resampled + resampler.held_back_samples() == pytest.approx(expected)
    assert resampled == out_samples
    assert 0.0 < worst <= MAX_INBOUND_HOLD_BACK_S


def test_outbound_audio_output_keeps_up_and_flush_returns_the_tail() -> None:
    audio = OutboundAudio()
    frame = tone(OUTBOUND_RATE, 0.02)
    out_bytes = 0
    worst = 0.0
    for frames_in in range(1, 50 + 1):  # one second
        out_bytes += len(audio.convert(frame))
        worst = max(worst, frames_in * 0.02 - out_bytes / ULAW_RATE)
    assert 0.0 < worst <= MAX_OUTBOUND_HOLD_BACK_S
    assert out_bytes < ULAW_RATE
    assert out_bytes + len(audio.flush()) == ULAW_RATE  # exactly one second of mu-law


def test_outbound_audio_works_again_after_a_flush() -> None:
    audio = OutboundAudio()
    pcm = noise(OUTBOUND_RATE)
    first = audio.convert(pcm) + audio.flush()
    assert audio.convert(pcm) + audio.flush() == first


# --- reset --------------------------------------------------------------------------------


def test_outbound_audio_reset_leaves_nothing_of_the_cut_reply() -> None:
    loud = tone(OUTBOUND_RATE, 0.5, amplitude=0.9)
    silence = bytes(OUTBOUND_RATE * 2)  # one second
    without_reset = OutboundAudio()
    without_reset.convert(loud)
    tail = without_reset.convert(silence)
    assert set(tail) != {0xFF}  # the cut reply would leak into what follows

    audio = OutboundAudio()
    audio.convert(loud + b"\x01")  # an odd byte pending, too
    audio.reset()
    after = audio.convert(silence) + audio.flush()
    assert set(after) == {0xFF}  # mu-law silence
    assert len(after) == ULAW_RATE


def test_outbound_audio_after_reset_equals_a_fresh_one() -> None:
    pcm = noise(OUTBOUND_RATE, seed=3)
    fresh = OutboundAudio()
    expected = fresh.convert(pcm) + fresh.flush()
    audio = OutboundAudio()
    audio.convert(noise(OUTBOUND_RATE // 3, seed=4))
    audio.reset()
    assert audio.convert(pcm) + audio.flush() == expected
