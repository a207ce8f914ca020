"""Input transcripts that stream in pieces while the user speaks
(google-gemini/gemini-live-api-examples#26, #45).

The user turn's audio is cut into `SEGMENT_SECONDS` segments, each described like a whole
turn is (`[0.5 s at 440 Hz]`). A segment is transcribed once it can no longer be trimmed
away: with automatic activity detection the turn ends after `silence` seconds of quiet
that are then cut off, so a segment waits until that much audio follows it. What is left
at the end of the turn becomes the last pieces. Pieces after the first start with a
space, so their concatenation is exactly the turn's transcript: the text the model
"heard" (in `You said: ...`, the history and `recap`).
"""

from __future__ import annotations

from collections.abc import Callable

from voice_platform.live_emulator import audio

SEGMENT_SECONDS = 0.5
_SEGMENT_BYTES = int(SEGMENT_SECONDS * audio.INPUT_RATE) * 2


class TranscriptStream:
    def __init__(self, *, silence: float, emit: Callable[[str], None]) -> None:
        self.guard_bytes = int(silence * audio.INPUT_RATE) * 2
        self.emit = emit  # called with each piece, in order
        self._audio = bytearray()
        self._done = 0  # bytes of the turn already transcribed
        self._pieces: list[str] = []

    def reset(self) -> None:
        self._audio.clear()
        self._done = 0
        self._pieces = []

    def feed(self, pcm: bytes) -> None:
        """Audio appended to the turn in progress."""
        self._audio += pcm
        while len(self._audio) - self._done >= _SEGMENT_BYTES + self.guard_bytes:
            self._piece(bytes(self._audio[self._done : self._done + _SEGMENT_BYTES]))
            self._done += _SEGMENT_BYTES

    def finish(self, pcm: bytes) -> str:
        """The turn ended with this (trimmed) audio: emit the rest; returns the transcript."""
        rest = pcm[self._done :]
        for start in range(0, len(rest), _SEGMENT_BYTES):
            self._piece(rest[start : start + _SEGMENT_BYTES])
        heard = "".join(self._pieces)
        self.reset()
        return heard

    def _piece(self, segment: bytes) -> None:
        piece = audio.describe(segment)
        if self._pieces:
            piece = " " + piece
        self._pieces.append(piece)
        self.emit(piece)
