"""Audio goes up no faster than real time, however much of it is waiting.

The service's voice-activity detector listens in real time: a burst of replayed audio (up
to 30 s after a reconnect) is not heard as speech. The pacer keeps an audio clock, the
moment the audio sent so far "ends" when played at real time, and lets a frame go only
while that clock is less than ``lead`` ahead of now. Live frames arrive at real time and
never wait; a backlog drains at real time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

BYTES_PER_SECOND = 16_000 * 2


class AudioPacer:
    def __init__(self, *, lead: float = 0.3, clock: Callable[[], float] = time.monotonic) -> None:
        self.lead = lead
        self._clock = clock
        self._audio_end = 0.0

    def wait_for(self, pcm_bytes: int) -> float:
        """Seconds to wait before sending a frame of this size (0: send now)."""
        now = self._clock()
        self._audio_end = max(self._audio_end, now)
        return max(0.0, self._audio_end - now - self.lead)

    def sent(self, pcm_bytes: int) -> None:
        now = self._clock()
        self._audio_end = max(self._audio_end, now) + pcm_bytes / BYTES_PER_SECOND

    def ahead(self) -> float:
        """How far the audio sent so far runs ahead of real time."""
        return max(0.0, self._audio_end - self._clock())

    def reset(self) -> None:
        """A new connection hears from now on."""
        self._audio_end = 0.0
