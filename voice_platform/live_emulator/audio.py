"""Deterministic audio: echo resampling, synthesised speech and a fake transcription."""

from __future__ import annotations

from typing import Any

import numpy as np

INPUT_RATE = 16_000
OUTPUT_RATE = 24_000


def pcm_seconds(pcm_bytes: int, rate: int) -> float:
    return pcm_bytes / 2 / rate


def sum_squares(pcm: bytes) -> float:
    """Of PCM16 samples: the energy a recorder adds up."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)
    return float(np.dot(samples, samples))


def resample(pcm: bytes, src_rate: int = INPUT_RATE, dst_rate: int = OUTPUT_RATE) -> bytes:
    """Linear-interpolation resampling of PCM16 mono (good enough for an echo)."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32)
    if samples.size == 0:
        return b""
    count = samples.size * dst_rate // src_rate
    positions = np.arange(count, dtype=np.float64) * (src_rate / dst_rate)
    out = np.interp(positions, np.arange(samples.size), samples)
    return bytes(np.clip(out, -32768, 32767).astype("<i2").tobytes())


def synthesize(text: str, ms_per_char: int, rate: int = OUTPUT_RATE) -> bytes:
    """A tone per character (silence for spaces): the same text always sounds the same."""
    per_char = rate * ms_per_char // 1000
    t = np.arange(per_char, dtype=np.float32) / rate
    pieces: list[Any] = []
    for char in text:
        if char.isspace():
            pieces.append(np.zeros(per_char, dtype=np.float32))
        else:
            freq = 200.0 + (ord(char) % 40) * 15.0
            pieces.append(0.25 * np.sin(2 * np.pi * freq * t))
    if not pieces:
        return b""
    wave = np.concatenate(pieces) * 32767
    return bytes(wave.astype("<i2").tobytes())


def describe(pcm: bytes, rate: int = INPUT_RATE) -> str:
    """The emulator's "transcription": duration and dominant pitch, e.g. `[1.2 s at 440 Hz]`.

    There is no speech recogniser offline, so this is what an audio turn "said". A pure
    test tone gives its frequency (zero crossings), rounded to 10 Hz.
    """
    seconds = len(pcm) // 2 / rate
    freq = pitch_hz(pcm, rate)
    if freq is None:
        return f"[{seconds:.1f} s of audio]"
    return f"[{seconds:.1f} s at {freq} Hz]"


def pitch_hz(pcm: bytes, rate: int = INPUT_RATE) -> int | None:
    """Zero-crossing pitch rounded to 10 Hz (None for less than two samples)."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32)
    if samples.size < 2:
        return None
    signs = np.signbit(samples)
    crossings = int(np.count_nonzero(signs[1:] != signs[:-1]))
    return round(crossings / 2 / (samples.size / rate) / 10) * 10


def trim_end(pcm: bytes, seconds: float, rate: int = INPUT_RATE) -> bytes:
    """Drop the trailing silence the VAD waited for before ending the turn."""
    cut = int(seconds * rate) * 2
    return pcm[: max(0, len(pcm) - cut)]
