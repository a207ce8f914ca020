"""Audio utilities shared by the Python client, the load generators and the tests.

The wire format is little-endian 16-bit PCM, mono: 16 kHz from the client, 24 kHz from the
model. The float <-> PCM16 scaling is asymmetric on purpose (positive values scale by 32767,
negative by 32768) so that both ends of [-1, 1] map onto the full int16 range; the browser
worklet does exactly the same arithmetic, and a test compares the two on one input.
"""

from __future__ import annotations

import base64
import binascii
import math
import wave
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr  # type: ignore[import-untyped]  # ships without type hints

INPUT_RATE = 16_000
OUTPUT_RATE = 24_000
SAMPLE_WIDTH = 2
FRAME_MS = 100

# The worst resampling SNR the tests accept for a pure tone (see `resampling_snr_db`).
MIN_RESAMPLING_SNR_DB = 40.0

FloatArray = np.ndarray


def float32_to_pcm16(samples: Sequence[float] | FloatArray) -> bytes:
    """Little-endian int16 bytes for float samples in [-1, 1].

    Values are clipped to [-1, 1]; positive ones scale by 32767 and negative ones by 32768,
    truncated toward zero (0.5 -> 16383, -0.5 -> -16384, 1.0 -> 32767, -1.0 -> -32768);
    NaN becomes 0. The product is taken in float64, as JavaScript does, so the worklet and
    this function agree bit for bit on float32 input.
    """
    values = np.asarray(samples, dtype=np.float64).reshape(-1)
    values = np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=-1.0)
    values = np.clip(values, -1.0, 1.0)
    scaled = np.where(values > 0, values * 32767.0, values * 32768.0)
    return bytes(np.trunc(scaled).astype("<i2").tobytes())


def pcm16_to_float32(data: bytes) -> FloatArray:
    """Float32 samples for little-endian int16 bytes: positive / 32767, negative / 32768.

    Negative samples survive a round trip through `float32_to_pcm16` exactly; a positive one
    may come back one lower, because float32 rounding can land just under the exact quotient
    and `float32_to_pcm16` truncates.
    """
    if len(data) % SAMPLE_WIDTH:
        raise ValueError(f"PCM16 data of {len(data)} bytes is not whole 16-bit samples")
    ints = np.frombuffer(data, dtype="<i2").astype(np.float64)
    return np.where(ints > 0, ints / 32767.0, ints / 32768.0).astype(np.float32)


def pcm16_to_base64(data: bytes) -> str:
    """Standard (RFC 4648, padded) base64 text for PCM16 bytes."""
    return base64.b64encode(data).decode("ascii")


def base64_to_pcm16(text: str) -> bytes:
    """PCM16 bytes from standard base64 text; ValueError when it is not whole int16 samples."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not valid base64: {exc}") from exc
    if len(data) % SAMPLE_WIDTH:
        raise ValueError(f"decoded audio of {len(data)} bytes is not whole 16-bit samples")
    return data


def resample(samples: FloatArray, from_rate: int, to_rate: int) -> FloatArray:
    """Float32 samples resampled with soxr (high quality); 1-D mono or 2-D (frames, channels)."""
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    values = np.asarray(samples, dtype=np.float32)
    if from_rate == to_rate or values.shape[0] == 0:
        return values.copy()
    return np.asarray(soxr.resample(values, from_rate, to_rate, quality="HQ"), dtype=np.float32)


def frame_bytes(rate: int = INPUT_RATE, ms: int = FRAME_MS) -> int:
    """Bytes in one frame of `ms` milliseconds of mono PCM16 at `rate`."""
    samples = rate * ms // 1000
    if samples <= 0:
        raise ValueError(f"a {ms} ms frame at {rate} Hz holds no samples")
    return samples * SAMPLE_WIDTH


def frames(pcm: bytes, rate: int = INPUT_RATE, ms: int = FRAME_MS) -> Iterator[bytes]:
    """Split mono PCM16 into frames of `ms` milliseconds.

    The last partial frame is kept as it is, not padded: the server accepts any whole number
    of samples, and padding would add silence the model hears (and the tenant pays for).
    A trailing odd byte (half a sample) is dropped.
    """
    size = frame_bytes(rate, ms)
    usable = len(pcm) - len(pcm) % SAMPLE_WIDTH
    for start in range(0, usable, size):
        yield pcm[start : min(start + size, usable)]


@dataclass(frozen=True)
class WavAudio:
    """Decoded WAV contents: float32 samples shaped (frames, channels) and the sample rate."""

    samples: FloatArray
    rate: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        return float(self.samples.shape[0]) / self.rate

    def mono(self) -> FloatArray:
        """The channels averaged into one 1-D float32 signal."""
        return np.asarray(self.samples.mean(axis=1), dtype=np.float32)


def _ints_to_float(raw: bytes, width: int) -> FloatArray:
    if width == 1:
        # 8-bit WAV is unsigned with 128 as silence.
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 2:
        return pcm16_to_float32(raw)
    if width == 3:
        bytes3 = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = bytes3[:, 0] | (bytes3[:, 1] << 8) | (bytes3[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        return (ints / float(1 << 23)).astype(np.float32)
    if width == 4:
        return (np.frombuffer(raw, dtype="<i4") / float(1 << 31)).astype(np.float32)
    raise ValueError(f"unsupported WAV sample width: {width} bytes")


def read_wav(path: str | Path) -> WavAudio:
    """Decode an integer-PCM WAV file (8, 16, 24 or 32 bit; any channel count and rate)."""
    try:
        with wave.open(str(path), "rb") as reader:
            width = reader.getsampwidth()
            channels = reader.getnchannels()
            rate = reader.getframerate()
            raw = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a PCM WAV file ({exc})") from exc
    usable = len(raw) - len(raw) % (width * channels)
    samples = _ints_to_float(raw[:usable], width).reshape(-1, channels)
    return WavAudio(samples=samples, rate=rate)


def read_wav_pcm16(path: str | Path, rate: int = INPUT_RATE) -> bytes:
    """A WAV file as mono PCM16 at `rate`: mixed down, resampled, converted."""
    audio = read_wav(path)
    return float32_to_pcm16(resample(audio.mono(), audio.rate, rate))


def write_wav(path: str | Path, pcm: bytes, rate: int = OUTPUT_RATE, channels: int = 1) -> None:
    """Write little-endian PCM16 bytes as a WAV file."""
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(SAMPLE_WIDTH)
        writer.setframerate(rate)
        writer.writeframes(pcm)


def sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> FloatArray:
    """A float32 sine tone, the reference signal of the quality check."""
    t = np.arange(round(rate * seconds), dtype=np.float64) / rate
    return (amplitude * np.sin(2.0 * math.pi * freq * t)).astype(np.float32)


def tone(
    seconds: float, freq: float = 440.0, amplitude: float = 0.3, rate: int = INPUT_RATE
) -> bytes:
    """Mono PCM16 of a sine tone: what the tests and load generators send as speech (the
    emulator's VAD hears it as a voice; 0.3 of full scale is a loud one)."""
    return float32_to_pcm16(sine(freq, rate, seconds, amplitude))


def silence(seconds: float, rate: int = INPUT_RATE) -> bytes:
    """Mono PCM16 silence, as long as `sine` makes a tone of the same duration."""
    return bytes(round(rate * seconds) * SAMPLE_WIDTH)


def snr_db(actual: FloatArray, ideal: FloatArray) -> float:
    """Signal-to-noise ratio, in dB, of `actual` against the `ideal` signal (same length)."""
    ideal64 = np.asarray(ideal, dtype=np.float64)
    noise = np.asarray(actual, dtype=np.float64) - ideal64
    noise_power = float(np.mean(noise**2))
    signal_power = float(np.mean(ideal64**2))
    if noise_power == 0.0:
        return math.inf
    return 10.0 * math.log10(signal_power / noise_power)


def resampling_snr_db(
    from_rate: int, to_rate: int, freq: float = 1000.0, seconds: float = 1.0
) -> float:
    """SNR of a sine resampled by `resample` against the ideal sine at the target rate.

    The first and last 10% are ignored: a one-shot resampler's filter rings at the edges of
    a tone that starts and stops abruptly, which says nothing about its steady quality.
    """
    resampled = resample(sine(freq, from_rate, seconds), from_rate, to_rate)
    ideal = sine(freq, to_rate, seconds)
    length = min(len(resampled), len(ideal))
    edge = length // 10
    return snr_db(resampled[edge : length - edge], ideal[edge : length - edge])
