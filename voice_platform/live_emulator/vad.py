"""Energy-based voice activity detection on 16 kHz PCM16, the stand-in for Google's VAD."""

from __future__ import annotations

from enum import Enum

import numpy as np

INPUT_RATE = 16_000
WINDOW_MS = 20
_WINDOW = INPUT_RATE * WINDOW_MS // 1000

# How setup sensitivities scale the start delay and the energy threshold.
_START_SCALE = {"START_SENSITIVITY_HIGH": 0.5, "START_SENSITIVITY_LOW": 2.5}
_END_SCALE = {"END_SENSITIVITY_HIGH": 0.5, "END_SENSITIVITY_LOW": 2.0}


class VadEvent(Enum):
    SPEECH_START = "start"
    SPEECH_END = "end"


class EnergyVad:
    """Speech starts after `start_ms` of loud windows and ends after `silence_ms` of quiet."""

    def __init__(self, *, threshold: float, start_ms: int, silence_ms: int) -> None:
        self.threshold = threshold
        self.start_ms = start_ms
        self.silence_ms = silence_ms
        self.speaking = False
        self._loud_ms = 0
        self._quiet_ms = 0
        self._rest = np.zeros(0, dtype=np.int16)

    @classmethod
    def from_setup(
        cls, detection: dict[str, object], *, threshold: float, start_ms: int, silence_ms: int
    ) -> EnergyVad:
        """Apply `automaticActivityDetection` from the setup to the server defaults."""
        start_scale = _START_SCALE.get(str(detection.get("startOfSpeechSensitivity")), 1.0)
        end_scale = _END_SCALE.get(str(detection.get("endOfSpeechSensitivity")), 1.0)
        silence = detection.get("silenceDurationMs")
        return cls(
            threshold=threshold * (2.0 if start_scale > 1 else 1.0),
            start_ms=max(WINDOW_MS, int(start_ms * start_scale)),
            silence_ms=int(silence) if isinstance(silence, int) else int(silence_ms * end_scale),
        )

    def reset(self) -> None:
        self.speaking = False
        self._loud_ms = self._quiet_ms = 0

    def feed(self, pcm: bytes) -> list[VadEvent]:
        """Feed any amount of PCM16 LE mono; returns the transitions it caused, in order."""
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
        if self._rest.size:
            samples = np.concatenate([self._rest, samples])
        whole = samples.size // _WINDOW * _WINDOW
        self._rest = samples[whole:].copy()
        if not whole:
            return []
        windows = samples[:whole].astype(np.float32).reshape(-1, _WINDOW)
        loud = np.sqrt(np.mean(windows * windows, axis=1)) >= self.threshold
        events: list[VadEvent] = []
        for is_loud in loud.tolist():
            if is_loud:
                self._loud_ms += WINDOW_MS
                self._quiet_ms = 0
                if not self.speaking and self._loud_ms >= self.start_ms:
                    self.speaking = True
                    events.append(VadEvent.SPEECH_START)
            else:
                self._quiet_ms += WINDOW_MS
                self._loud_ms = 0
                if self.speaking and self._quiet_ms >= self.silence_ms:
                    self.speaking = False
                    events.append(VadEvent.SPEECH_END)
        return events


class RealtimeGate:
    """The service hears input audio at real time, with `buffer` seconds of read-ahead.

    An audio clock starts at the first frame's arrival and advances by each accepted
    frame's duration, never behind the wall clock. A frame that would start more than
    `buffer` seconds ahead of now is discarded (not heard, not in any turn). `None`
    accepts everything, as the plain emulator does.
    """

    def __init__(self, buffer: float | None) -> None:
        self.buffer = buffer
        self._end: float | None = None

    def admit(self, seconds: float, now: float) -> bool:
        if self.buffer is None:
            return True
        start = now if self._end is None else max(self._end, now)
        if start - now > self.buffer:
            return False
        self._end = start + seconds
        return True
