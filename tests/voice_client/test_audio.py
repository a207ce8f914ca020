"""voice_client.audio: the conversions the client, the load generators and the worklet share."""

from __future__ import annotations

import math
import wave

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from voice_client import audio

floats32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
unit_floats = st.floats(min_value=-1.0, max_value=1.0, width=32)
pcm_bytes = st.binary(max_size=4000).map(lambda b: b[: len(b) - len(b) % 2])


def ints(data: bytes) -> list[int]:
    return np.frombuffer(data, dtype="<i2").tolist()


def test_the_documented_conversion_points():
    # The table: positive values scale by 32767, negative by 32768, toward zero.
    samples = [0.5, -0.5, 0.0, 1.0, -1.0, float("nan"), 1.5, -7.0, float("inf")]
    assert ints(audio.float32_to_pcm16(samples)) == [
        16383, -16384, 0, 32767, -32768, 0, 32767, -32768, 32767,
    ]  # fmt: skip
    assert audio.pcm16_to_float32(audio.float32_to_pcm16([1.0, -1.0, 0.0])).tolist() == [
        1.0, -1.0, 0.0,
    ]  # fmt: skip


@given(st.lists(floats32, max_size=200))
def test_float_to_pcm_is_monotonic_sign_keeping_and_clipped(values):
    out = ints(audio.float32_to_pcm16(np.array(values, dtype=np.float32)))
    assert len(out) == len(values)
    for value, sample in zip(values, out, strict=True):
        if value >= 1.0:
            assert sample == 32767
        elif value <= -1.0:
            assert sample == -32768
        else:
            scale = 32767 if value > 0 else 32768
            # Truncation toward zero: never further from zero than the exact product.
            assert abs(sample) <= abs(value) * scale < abs(sample) + 1
            assert sample == 0 or (sample > 0) == (value > 0)
    order = sorted(range(len(values)), key=lambda i: values[i])
    assert [out[i] for i in order] == sorted(out)


@given(pcm_bytes)
def test_pcm_to_float_and_back_loses_at_most_one_step(data):
    back = ints(audio.float32_to_pcm16(audio.pcm16_to_float32(data)))
    for original, again in zip(ints(data), back, strict=True):
        if original <= 0:
            assert again == original  # x / 32768 is exact in float32
        else:
            assert original - 1 <= again <= original


@given(st.lists(unit_floats, max_size=200))
def test_float_to_pcm_and_back_is_within_one_step(values):
    again = audio.pcm16_to_float32(audio.float32_to_pcm16(values))
    assert np.all(np.abs(again - np.array(values, dtype=np.float32)) <= 1 / 32767 + 1e-7)
    assert np.all((again >= -1.0) & (again <= 1.0))


@given(pcm_bytes)
def test_base64_round_trip(data):
    text = audio.pcm16_to_base64(data)
    assert text.isascii()
    assert audio.base64_to_pcm16(text) == data


@pytest.mark.parametrize("text", ["AAAA", "AA==", "not base64!", "AA=A"])
def test_base64_that_is_not_whole_samples_is_refused(text):
    with pytest.raises(ValueError, match=r"base64|16-bit"):
        audio.base64_to_pcm16(text)


def test_odd_pcm_is_refused():
    with pytest.raises(ValueError, match="16-bit"):
        audio.pcm16_to_float32(b"\x00\x01\x02")


@given(st.binary(max_size=20_000), st.sampled_from([(16000, 100), (16000, 20), (24000, 40)]))
def test_frames_cover_the_audio_in_order_with_the_last_one_kept_short(data, shape):
    rate, ms = shape
    size = rate * ms // 1000 * 2
    chunks = list(audio.frames(data, rate, ms))
    whole = data[: len(data) - len(data) % 2]
    assert b"".join(chunks) == whole
    assert all(len(c) == size for c in chunks[:-1])
    assert all(0 < len(c) <= size and len(c) % 2 == 0 for c in chunks)
    assert len(chunks) == math.ceil(len(whole) / size)


def test_a_100_ms_frame_at_16_khz_is_3200_bytes():
    assert [len(f) for f in audio.frames(bytes(8000))] == [3200, 3200, 1600]


@pytest.mark.parametrize(
    ("from_rate", "to_rate"), [(48000, 16000), (44100, 16000), (24000, 16000), (24000, 48000)]
)
@pytest.mark.parametrize("freq", [440.0, 3000.0])
def test_resampling_keeps_a_tone_clean(from_rate, to_rate, freq):
    assert audio.resampling_snr_db(from_rate, to_rate, freq=freq) >= audio.MIN_RESAMPLING_SNR_DB
    out = audio.resample(audio.sine(freq, from_rate, 1.0), from_rate, to_rate)
    assert out.dtype == np.float32
    assert abs(len(out) - to_rate) <= 1


def test_the_quality_check_can_fail():
    """Dropping samples without an anti-alias filter folds a 10 kHz tone at 48 kHz onto
    6 kHz at 16 kHz: the check sees it, and `resample` filters it out."""
    mixed = audio.sine(1000.0, 48000, 1.0) + audio.sine(10000.0, 48000, 1.0)
    ideal = audio.sine(1000.0, 16000, 1.0)
    edge = slice(1600, -1600)
    assert audio.snr_db(mixed[::3][edge], ideal[edge]) < 10
    filtered = audio.resample(mixed, 48000, 16000)
    assert audio.snr_db(filtered[edge], ideal[edge]) >= audio.MIN_RESAMPLING_SNR_DB


def test_resample_refuses_nonsense_rates():
    with pytest.raises(ValueError, match="positive"):
        audio.resample(np.zeros(10, dtype=np.float32), 0, 16000)


def test_wav_round_trip(tmp_path):
    pcm = audio.float32_to_pcm16(audio.sine(440.0, 24000, 0.5))
    path = tmp_path / "reply.wav"
    audio.write_wav(path, pcm, rate=24000)
    with wave.open(str(path), "rb") as reader:
        shape = (reader.getnchannels(), reader.getsampwidth(), reader.getframerate())
    assert shape == (1, 2, 24000)
    decoded = audio.read_wav(path)
    assert decoded.rate == 24000
    assert decoded.channels == 1
    again = ints(audio.float32_to_pcm16(decoded.mono()))
    # Within the conversions' one step (positive samples may come back one lower).
    assert all(0 <= a - b <= 1 for a, b in zip(ints(pcm), again, strict=True))


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_a_stereo_44k_wav_of_any_width_becomes_16k_mono_pcm16(tmp_path, width):
    tone = audio.sine(440.0, 44100, 0.5, amplitude=0.5).astype(np.float64)
    stereo = np.stack([tone, tone], axis=1).reshape(-1)
    if width == 1:
        raw = np.round(stereo * 127 + 128).astype(np.uint8).tobytes()
    else:
        full = np.round(stereo * (2 ** (8 * width - 1) - 1)).astype("<i4")
        raw = b"".join(int(v).to_bytes(width, "little", signed=True) for v in full)
    path = tmp_path / "in.wav"
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(2)
        writer.setsampwidth(width)
        writer.setframerate(44100)
        writer.writeframes(raw)
    pcm = audio.read_wav_pcm16(path)
    assert abs(len(pcm) // 2 - 8000) <= 1
    got = audio.pcm16_to_float32(pcm)
    ideal = audio.sine(440.0, 16000, 0.5, amplitude=0.5)[: len(got)]
    edge = len(got) // 10
    floor = 30.0 if width == 1 else audio.MIN_RESAMPLING_SNR_DB  # 8 bits hold ~48 dB at most
    assert audio.snr_db(got[edge:-edge], ideal[edge:-edge]) >= floor


def test_a_file_that_is_not_a_wav_is_a_value_error(tmp_path):
    path = tmp_path / "x.wav"
    path.write_bytes(b"RIFF nonsense")
    with pytest.raises(ValueError, match="not a PCM WAV"):
        audio.read_wav(path)


@pytest.mark.parametrize(("seconds", "freq", "rate"), [(0.7, 440.0, 16000), (0.1, 300.0, 24000)])
def test_a_tone_is_pcm16_at_its_frequency_and_loudness_and_silence_matches_its_length(
    seconds, freq, rate
):
    pcm = audio.tone(seconds, freq, 0.3, rate)
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    assert len(samples) == round(seconds * rate)  # 0.7 s is 11200 samples, not 11199
    assert np.abs(samples).max() == pytest.approx(0.3 * 32767, rel=0.01)
    spectrum = np.abs(np.fft.rfft(samples))
    peak = float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])
    assert peak == pytest.approx(freq, abs=rate / len(samples))  # within one FFT bin
    quiet = audio.silence(seconds, rate)
    assert quiet == bytes(len(pcm))
