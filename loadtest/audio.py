"""What the simulated callers say: one utterance per spoken turn, cut into real-time frames.

The default utterance is synthesised at start (nothing is downloaded or shipped): a voiced
sound with a speech-like pitch contour and four syllables a second, loud enough for any
energy VAD, with short dips between syllables (shorter than an end-of-turn silence). A
user's own recording replaces it with `--wav`.

In echo mode (`--echo`) every frame carries its sequence number and send time in its first
16 bytes; the emulator (`--echo-frames`) writes its receipt time into bytes 16-23 and sends
the frame straight back, so a round trip through the platform can be timed per frame.
"""

from __future__ import annotations

import math
import struct
import time
from pathlib import Path

import numpy as np

from voice_client.audio import INPUT_RATE, float32_to_pcm16, read_wav_pcm16, silence
from voice_platform.live_emulator.echo import STAMP_END, read_stamp

MAX_UTTERANCE_SECONDS = 30.0
_HEAD = struct.Struct("<QQ")  # sequence number, CLOCK_MONOTONIC ns at the send


def speech_like(seconds: float = 1.2, rate: int = INPUT_RATE) -> bytes:
    """A deterministic speech-like utterance as 16 kHz PCM16 mono."""
    t = np.arange(round(rate * seconds), dtype=np.float64) / rate
    # A falling-rising intonation around 150 Hz, as a voice's pitch moves.
    pitch = 150.0 + 25.0 * np.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    # Four syllables a second: a raised cosine that dips to 10 % between them.
    envelope = 0.1 + 0.9 * (0.5 - 0.5 * np.cos(2 * math.pi * 4.0 * t))
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.02)  # no clicks at the ends
    wave = voiced * envelope * fade
    peak = float(np.max(np.abs(wave))) or 1.0
    return float32_to_pcm16(0.4 * wave / peak)


def load_utterance(path: str | None) -> bytes:
    """The PCM16 16 kHz mono bytes of one spoken turn: the WAV at `path` (any integer-PCM
    WAV, mixed down and resampled) or the synthesised default. Raises ValueError."""
    if path is None:
        return speech_like()
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file")
    pcm = read_wav_pcm16(path)
    seconds = len(pcm) / 2 / INPUT_RATE
    if seconds < 0.1:
        raise ValueError(f"{path}: {seconds:.2f} s of audio; a turn needs at least 0.1 s")
    if seconds > MAX_UTTERANCE_SECONDS:
        raise ValueError(
            f"{path}: {seconds:.1f} s of audio; one turn plays the whole file, keep it under "
            f"{MAX_UTTERANCE_SECONDS:.0f} s"
        )
    return pcm


def split_frames(pcm: bytes, frame_ms: int) -> list[bytes]:
    """`pcm` as frames of `frame_ms`, the last one padded with silence to full length."""
    size = INPUT_RATE * 2 * frame_ms // 1000
    frames = [pcm[i : i + size] for i in range(0, len(pcm), size)]
    if frames and len(frames[-1]) < size:
        frames[-1] += b"\x00" * (size - len(frames[-1]))
    return frames


def silent_frame(frame_ms: int) -> bytes:
    return silence(frame_ms / 1000)


def stamp(frame: bytes, seq: int) -> bytes:
    """The frame with its sequence number and send time (now) in its first 16 bytes."""
    return _HEAD.pack(seq, time.monotonic_ns()) + frame[_HEAD.size :]


def read_echo(data: bytes) -> tuple[int, int, int] | None:
    """(sequence number, our send time, the emulator's receipt time) of an echoed frame, in
    ns; None for anything that is not one (too short)."""
    if len(data) < STAMP_END:
        return None
    received = read_stamp(data)
    if received is None:
        return None
    seq, sent = _HEAD.unpack_from(data)
    return seq, sent, received
