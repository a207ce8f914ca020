"""Resampling quality, measured: SNR of a swept tone through both directions, and how much of
the energy above 4 kHz aliases onto the 8 kHz phone line.

Where the thresholds come from:

- Resampler alone (PCM16 in and out): libsoxr "HQ" is its 20-bit recipe (soxr.h:
  ``SOXR_HQ = SOXR_20_BITQ``; soxr.c soxr_quality_spec(): rejection = 20 x 6.02 = 120 dB,
  pass band to 0.913 of Nyquist with SOXR_ROLLOFF_SMALL "<= 0.01 dB").
  * Pass-band SNR >= 58 dB: a 0.01 dB gain error is a 0.115 % amplitude error, i.e. an SNR of
    20 log10(1 / 0.00115) = 58.8 dB; the sweep (100 Hz - 3.4 kHz) stays inside the pass band
    (0.913 x 4 kHz = 3.65 kHz). Measured: ~90 dB (the 16-bit quantisation floor).
  * Aliasing / imaging rejection >= 90 dB: the documented 120 dB is below what PCM16 output
    can show (6.02 x 16 = 96 dB of range), so the threshold is the 16-bit floor less 6 dB.
    Measured: ~113 dB down-sampling, ~98 dB up-sampling.
- Full path (with G.711 mu-law): mu-law's SQNR is ~38 dB for a loud signal, and ITU-T G.712
  asks a PCM channel for a signal-to-total-distortion ratio >= 35 dB from -30 to 0 dBm0:
  SNR >= 35 dB. Out-of-band discrimination, G.712: an input above 4.6 kHz must come out at
  least 25 dB down: aliasing rejection >= 25 dB. Measured: ~37 dB and ~99 dB.

The naive resamplers at the end show the measurements bite: dropping samples aliases the
whole 4.5-11 kHz sweep onto the line (0 dB), a 3-tap average only ~10 dB; sample repetition
and linear interpolation leave images only ~17 and ~32 dB down.
"""

from __future__ import annotations

import numpy as np

from telephony.audio import (
    INBOUND_RATE,
    OUTBOUND_RATE,
    ULAW_RATE,
    InboundAudio,
    OutboundAudio,
    PcmResampler,
    pcm16_to_ulaw,
    ulaw_to_pcm16,
)

MIN_PCM_SNR_DB = 58.0
MIN_PCM_REJECTION_DB = 90.0
MIN_ULAW_SNR_DB = 35.0
MIN_ULAW_REJECTION_DB = 25.0

SECONDS = 4.0
FADE_S = 0.05  # a raised-cosine fade: an abrupt start would be a broadband click
EDGE_S = 0.1  # left out of the SNR: the fades and the filter's start and end
PASSBAND = (100.0, 3400.0)
ABOVE_PHONE_BAND = (4500.0, 11000.0)

Signal = np.ndarray


def sweep(rate: int, low: float, high: float, amplitude: float = 0.5) -> Signal:
    """The ideal logarithmic sine sweep sampled at `rate`, computed from its formula: the same
    continuous signal at every rate, so it is the reference for a resampled one."""
    t = np.arange(round(rate * SECONDS)) / rate
    k = np.log(high / low)
    phase = 2 * np.pi * low * SECONDS / k * (np.exp(t * k / SECONDS) - 1)
    ramp = np.clip(np.minimum(t, SECONDS - t) / FADE_S, 0.0, 1.0)
    return amplitude * (0.5 - 0.5 * np.cos(np.pi * ramp)) * np.sin(phase)


def to_pcm16(signal: Signal) -> Signal:
    return np.clip(np.rint(signal * 32768), -32768, 32767).astype("<i2")


def resample_in_frames(in_rate: int, out_rate: int, pcm: Signal) -> Signal:
    """Through the module's resampler in 20 ms chunks, then its flush."""
    resampler = PcmResampler(in_rate, out_rate)
    size = in_rate // 50
    parts = [resampler.process(pcm[i : i + size]) for i in range(0, len(pcm), size)]
    return np.concatenate([*parts, resampler.flush()]).astype(np.float64) / 32768


def delay_samples(actual: Signal, ideal: Signal, search: int = 64) -> int:
    """The lag (in output samples) that best lines `actual` up with `ideal`."""
    n = len(ideal) - 2 * search
    scores = [np.dot(actual[search + lag : search + lag + n], ideal[search : search + n])
              for lag in range(-search, search + 1)]  # fmt: skip
    return int(np.argmax(scores)) - search


def snr_db(actual: Signal, ideal: Signal, rate: int) -> float:
    """SNR of `actual` against `ideal`, the filter delay compensated, edges left out."""
    lag = delay_samples(actual, ideal)
    edge = round(EDGE_S * rate)
    wanted = ideal[edge:-edge]
    got = actual[edge + lag : edge + lag + len(wanted)]
    return float(10 * np.log10(np.sum(wanted**2) / np.sum((got - wanted) ** 2)))


def rejection_db(source: Signal, result: Signal) -> float:
    """How far below the out-of-band input lies what reached the 8 kHz side (all of it is
    below 4 kHz there, so all of it is alias)."""
    leaked = max(float(np.mean(result**2)), 1e-30)
    return float(10 * np.log10(np.mean(source**2) / leaked))


def image_rejection_db(result: Signal, rate: int, above: float = 4100.0) -> float:
    """Total power over the power above `above` Hz (images of a sub-4 kHz signal)."""
    power = np.abs(np.fft.rfft(result * np.blackman(len(result)))) ** 2
    freqs = np.fft.rfftfreq(len(result), 1 / rate)
    return float(10 * np.log10(power.sum() / max(power[freqs > above].sum(), 1e-30)))


# --- the resampler alone (PCM16 in and out) -----------------------------------------------


def test_upsampling_8_to_16_khz_keeps_a_passband_sweep_and_adds_no_images() -> None:
    out = resample_in_frames(ULAW_RATE, INBOUND_RATE, to_pcm16(sweep(ULAW_RATE, *PASSBAND)))
    ideal = sweep(INBOUND_RATE, *PASSBAND)
    assert len(out) == len(ideal)
    assert delay_samples(out, ideal) == 0  # libsoxr removes the linear-phase group delay
    assert snr_db(out, ideal, INBOUND_RATE) >= MIN_PCM_SNR_DB
    assert image_rejection_db(out, INBOUND_RATE) >= MIN_PCM_REJECTION_DB


def test_downsampling_24_to_8_khz_keeps_a_passband_sweep() -> None:
    out = resample_in_frames(OUTBOUND_RATE, ULAW_RATE, to_pcm16(sweep(OUTBOUND_RATE, *PASSBAND)))
    ideal = sweep(ULAW_RATE, *PASSBAND)
    assert len(out) == len(ideal)
    assert delay_samples(out, ideal) == 0
    assert snr_db(out, ideal, ULAW_RATE) >= MIN_PCM_SNR_DB


def test_downsampling_24_to_8_khz_rejects_what_would_alias_below_4_khz() -> None:
    source = to_pcm16(sweep(OUTBOUND_RATE, *ABOVE_PHONE_BAND))
    out = resample_in_frames(OUTBOUND_RATE, ULAW_RATE, source)
    assert rejection_db(source / 32768, out) >= MIN_PCM_REJECTION_DB


# --- the full path (with G.711 mu-law) ----------------------------------------------------


def test_inbound_audio_from_ulaw_meets_the_g712_snr() -> None:
    ulaw = pcm16_to_ulaw(to_pcm16(sweep(ULAW_RATE, *PASSBAND)).tobytes())
    audio = InboundAudio()
    pcm = b"".join(audio.convert(ulaw[i : i + 160]) for i in range(0, len(ulaw), 160))
    out = np.frombuffer(pcm, dtype="<i2") / 32768
    # InboundAudio never flushes (Twilio's frames keep coming): compare what came out.
    ideal = sweep(INBOUND_RATE, *PASSBAND)[: len(out)]
    assert snr_db(out, ideal, INBOUND_RATE) >= MIN_ULAW_SNR_DB


def outbound(pcm: Signal) -> Signal:
    audio = OutboundAudio()
    data = pcm.tobytes()
    ulaw = b"".join(audio.convert(data[i : i + 960]) for i in range(0, len(data), 960))
    return np.frombuffer(ulaw_to_pcm16(ulaw + audio.flush()), dtype="<i2") / 32768


def test_outbound_audio_to_ulaw_meets_the_g712_snr() -> None:
    out = outbound(to_pcm16(sweep(OUTBOUND_RATE, *PASSBAND)))
    assert snr_db(out, sweep(ULAW_RATE, *PASSBAND), ULAW_RATE) >= MIN_ULAW_SNR_DB


def test_outbound_audio_to_ulaw_meets_the_g712_out_of_band_discrimination() -> None:
    source = to_pcm16(sweep(OUTBOUND_RATE, *ABOVE_PHONE_BAND))
    assert rejection_db(source / 32768, outbound(source)) >= MIN_ULAW_REJECTION_DB


# --- the measurements bite: naive resamplers fail them ------------------------------------


def test_naive_decimation_fails_the_aliasing_thresholds() -> None:
    source = to_pcm16(sweep(OUTBOUND_RATE, *ABOVE_PHONE_BAND)) / 32768
    dropped = source[::3]
    averaged = np.convolve(source, np.ones(3) / 3, mode="same")[::3]
    assert rejection_db(source, dropped) < MIN_ULAW_REJECTION_DB
    assert rejection_db(source, averaged) < MIN_ULAW_REJECTION_DB


def test_naive_upsampling_fails_the_imaging_threshold_and_the_snr() -> None:
    source = to_pcm16(sweep(ULAW_RATE, *PASSBAND)) / 32768
    repeated = np.repeat(source, 2)
    linear = np.interp(np.arange(2 * len(source)) / 2, np.arange(len(source)), source)
    ideal = sweep(INBOUND_RATE, *PASSBAND)
    for naive in (repeated, linear):
        assert image_rejection_db(naive, INBOUND_RATE) < MIN_PCM_REJECTION_DB
        assert snr_db(naive, ideal, INBOUND_RATE) < MIN_PCM_SNR_DB
