"""Where the user's speech ends, heard in the audio we send up (an energy detector).

With the service's own voice-activity detection the bridge is never told that the user's
turn ended until the model answers, so it could not notice a model that never answers.
This estimate marks the moment a reply becomes due (``liveness.py``). It errs towards
"speech": a noise the service ignores costs at most ``reply_retries`` futile recoveries of
that turn; a missed end only delays noticing a silent upstream to the idle timeout.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable

import numpy as np

SAMPLE_RATE = 16_000
WINDOW_MS = 20
# About -36 dBFS on the int16 scale: the level the Live emulator's VAD uses too.
DEFAULT_THRESHOLD = 500.0
# About -55 dBFS: surely not speech, even a quiet talker's. What replay trimming and
# backlog catch-up may leave out; anything louder is kept.
SILENCE_THRESHOLD = 60.0


class SpeechEvent(enum.Enum):
    START = "start"
    END = "end"


def rms(pcm: bytes) -> float:
    """Root mean square of 16-bit little-endian PCM (0 for an empty frame)."""
    usable = len(pcm) - len(pcm) % 2
    if usable <= 0:
        return 0.0
    # One dot product in float64: exact for any frame size, and about a quarter of the
    # time of mean(samples * samples) (it runs per frame while the user is silent: uplink).
    samples = np.frombuffer(pcm[:usable], dtype="<i2").astype(np.float64)
    return math.sqrt(float(np.dot(samples, samples)) / len(samples))


def is_silent(pcm: bytes, threshold: float = SILENCE_THRESHOLD) -> bool:
    return rms(pcm) < threshold


def window_levels(pcm: bytes) -> list[tuple[int, float]]:
    """``(milliseconds, rms)`` of each 20 ms window of a frame, in one numpy pass (this runs
    for every frame that goes up)."""
    usable = len(pcm) - len(pcm) % 2
    if usable <= 0:
        return []
    samples = np.frombuffer(pcm[:usable], dtype="<i2").astype(np.float32)
    per_window = SAMPLE_RATE * WINDOW_MS // 1000
    if len(samples) <= per_window:  # the usual 20 ms frame: one dot product
        ms = len(samples) * 1000 // SAMPLE_RATE
        return [(ms, math.sqrt(float(np.dot(samples, samples)) / len(samples)))]
    whole = len(samples) // per_window * per_window
    levels: list[tuple[int, float]] = []
    if whole:
        windows = samples[:whole].reshape(-1, per_window)
        energies = np.sqrt(np.mean(windows * windows, axis=1))
        levels = [(WINDOW_MS, float(level)) for level in energies]
    if whole < len(samples):
        tail = samples[whole:]
        ms = len(tail) * 1000 // SAMPLE_RATE
        levels.append((ms, float(np.sqrt(np.mean(tail * tail)))))
    return levels


class SpeechDetector:
    """Speech starts after ``start_ms`` of loud windows and ends after ``silence_ms`` of
    quiet ones, counted in audio time (a frame's duration), not wall time."""

    def __init__(
        self,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        start_ms: int = 60,
        silence_ms: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.start_ms = start_ms
        self.silence_ms = silence_ms
        self._clock = clock
        self.speaking = False
        self._loud_ms = 0
        self._quiet_ms = 0
        self.last_speech_at = 0.0  # when the last loud frame went up
        self.last_frame_level = 0.0  # the loudest 20 ms window of the last frame fed

    def feed(self, pcm: bytes) -> SpeechEvent | None:
        """One frame that went up; the event it completes, if any."""
        event = None
        self.last_frame_level = 0.0
        for ms, level in window_levels(pcm):
            self.last_frame_level = max(self.last_frame_level, level)
            if level >= self.threshold:
                self._quiet_ms = 0
                self._loud_ms += ms
                self.last_speech_at = self._clock()
                if not self.speaking and self._loud_ms >= self.start_ms:
                    self.speaking = True
                    event = SpeechEvent.START
            else:
                self._loud_ms = 0
                if self.speaking:
                    self._quiet_ms += ms
                    if self._quiet_ms >= self.silence_ms:
                        self.speaking = False
                        self._quiet_ms = 0
                        event = SpeechEvent.END
        return event

    def reset(self) -> None:
        self.speaking = False
        self._loud_ms = self._quiet_ms = 0
