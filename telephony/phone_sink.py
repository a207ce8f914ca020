"""The phone side of a live session: the bridge's ``ClientSink`` for a Media Streams call.

Replies go out as 20 ms μ-law frames at real-time pace, so the carrier never holds more
than ``lead`` seconds of audio: what it holds is lost to a barge-in anyway, and what we
hold is dropped at once. After each reply chunk a ``mark`` follows its frames; the carrier
echoes it when that audio has played, which is how we know what the caller heard (the
cut transcript of an interrupted turn, voice-to-voice timing). docs/telephony.md, "The
media stream".
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from telephony.audio import ULAW_FRAME_BYTES, OutboundAudio

log = logging.getLogger(__name__)

FRAME_SECONDS = 0.02
ULAW_SILENCE = b"\xff"  # μ-law's code for zero
PCM24_BYTES_PER_MS = 48  # 24 kHz, 16-bit mono
MARK_EVERY_FRAMES = 5  # a mark per 100 ms of reply audio at most
PREROLL_SECONDS = 0.06  # held at a reply's start (see _play)


class PhoneOutput:
    """Paced outbound audio with marks and ``clear`` for one media stream.

    ``send`` writes one JSON text frame to the carrier; ``events`` hears every bridge
    event (the consumer acts on some); ``on_heard`` is told when a turn's audio first
    plays.
    """

    def __init__(
        self,
        *,
        stream_sid: str,
        send: Callable[[str], Awaitable[None]],
        close: Callable[[int], Awaitable[None]],
        events: Callable[[dict[str, Any]], Awaitable[None]],
        on_heard: Callable[[], None],
        lead: float,
    ) -> None:
        self.stream_sid = stream_sid
        self._send = send
        self._close = close
        self._events = events
        self._on_heard = on_heard
        self._lead = lead
        self._audio = OutboundAudio()
        self._partial = b""  # μ-law bytes short of a whole frame
        # Frames (bytes) and marks (int) in the order they go out.
        self._queue: deque[bytes | int] = deque()
        self._wake = asyncio.Event()
        self._playout_end = 0.0  # loop time at which the carrier's buffer runs dry
        self._mark_seq = 0
        self._cleared_upto = 0  # marks at or below this were flushed by a clear, not played
        self._marks: dict[int, tuple[int, float]] = {}  # mark -> (turn, its end in ms)
        self._turn = 0
        self._turn_ms = 0.0  # reply audio of this turn handed to us (ms)
        self._turn_frames = 0  # frames of it queued
        self._turn_marked = False  # a mark of this turn is queued
        self._heard_ms = 0.0  # of which the carrier said it played (ms, by marks)
        self._heard_turn = -1  # the turn whose first audio was reported heard
        self._unmarked = 0  # frames queued since the last mark
        self._reply_done = False  # the model's turn is complete (its audio may still play)
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._play(), name="phone-playout")

    async def stop(self) -> None:
        for task in list(self._side_tasks):
            task.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # --- ClientSink ----------------------------------------------------------------------

    async def send_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "interrupted":
            await self.clear()
        elif kind == "turn_complete":
            self._end_turn()
        await self._events(event)

    async def send_audio(self, pcm: bytes) -> None:
        self._reply_done = False
        ulaw = self._partial + self._audio.convert(pcm)
        whole = len(ulaw) - len(ulaw) % ULAW_FRAME_BYTES
        self._partial = ulaw[whole:]
        for start in range(0, whole, ULAW_FRAME_BYTES):
            self._queue.append(ulaw[start : start + ULAW_FRAME_BYTES])
        self._unmarked += whole // ULAW_FRAME_BYTES
        self._turn_frames += whole // ULAW_FRAME_BYTES
        self._turn_ms += len(pcm) / PCM24_BYTES_PER_MS
        # The reply's first frames are marked at once (its "playback started" is timed
        # by that mark), then every MARK_EVERY_FRAMES.
        if self._unmarked >= MARK_EVERY_FRAMES or (self._unmarked and not self._turn_marked):
            self._queue_mark()
        else:
            self._wake.set()

    def user_speech_started(self) -> None:
        """The caller speaks (``BARGE_IN_MS`` of it, telephony/media.py) while a reply the
        model has finished still plays (it was sent faster than real time and waits here):
        stop it, as the model's ``interrupted`` would have if it were still speaking."""
        if self._reply_done and self.playing:
            self._drop()  # now: the next reply's audio must not be caught by it
            task = asyncio.get_running_loop().create_task(self._send_clear(), name="phone-clear")
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)

    def _queue_mark(self) -> None:
        """A mark after what is queued: its echo says the caller heard up to here. One per
        ~100 ms of audio at most (every mark costs the carrier a message back)."""
        if not self._unmarked:
            return  # nothing new would be marked (the resampler held it all back)
        self._unmarked = 0
        self._turn_marked = True
        self._mark_seq += 1
        # Where the mark falls in the reply: the audio queued before it (the resampler
        # holds back some of what the model sent), never past what the model sent.
        played_ms = min(self._turn_frames * FRAME_SECONDS * 1000, self._turn_ms)
        self._marks[self._mark_seq] = (self._turn, played_ms)
        self._queue.append(self._mark_seq)
        self._wake.set()

    async def close_connection(self, code: int) -> None:
        await self._close(code)

    def output_heard_share(self) -> float | None:
        if self._turn_ms <= 0:
            return None
        return min(1.0, self._heard_ms / self._turn_ms)

    # --- from the carrier -------------------------------------------------------------------

    def mark_played(self, name: str) -> None:
        """The carrier played everything queued before mark ``name``."""
        try:
            seq = int(name)
        except ValueError:
            return  # not one of ours
        entry = self._marks.pop(seq, None)
        if entry is None or seq <= self._cleared_upto:
            return  # echoed by a clear: dropped, not played
        turn, end_ms = entry
        if turn == self._turn:
            self._heard_ms = max(self._heard_ms, end_ms)
        if turn > self._heard_turn:  # a reply's audio reached the caller's ear
            self._heard_turn = turn
            self._on_heard()

    # --- playback -------------------------------------------------------------------------

    @property
    def playing(self) -> bool:
        """Audio is queued here or still playing at the carrier (by our clock)."""
        loop = asyncio.get_running_loop()
        return bool(self._queue) or self._playout_end > loop.time()

    async def drained(self) -> None:
        """Until everything queued has been sent and played (by the marks)."""
        # Polled at the playback's own step: marks come back as carrier messages.
        while self._queue or self._marks_pending():  # noqa: ASYNC110
            await asyncio.sleep(FRAME_SECONDS)

    def _marks_pending(self) -> bool:
        return any(seq > self._cleared_upto for seq in self._marks)

    async def clear(self) -> None:
        """Drop what is queued here and tell the carrier to drop its buffer."""
        self._drop()
        await self._send_clear()

    async def _send_clear(self) -> None:
        with contextlib.suppress(Exception):  # the stream closed: nothing plays anyway
            await self._send(json.dumps({"event": "clear", "streamSid": self.stream_sid}))

    def _drop(self) -> None:
        """Forget the reply in flight: the queue, the resampler's filter, its marks."""
        self._queue.clear()
        self._partial = b""
        self._unmarked = 0
        self._audio.reset()
        self._cleared_upto = self._mark_seq
        self._marks.clear()
        self._playout_end = 0.0
        self._reply_done = False
        self._next_turn()

    def _end_turn(self) -> None:
        """The reply is complete: what the resampler still holds (its filter works in
        blocks, ~60 ms) and the last partial frame go out, padded with silence."""
        tail = self._partial + self._audio.flush()
        self._partial = b""
        if tail:
            tail += ULAW_SILENCE * (-len(tail) % ULAW_FRAME_BYTES)
            for start in range(0, len(tail), ULAW_FRAME_BYTES):
                self._queue.append(tail[start : start + ULAW_FRAME_BYTES])
            self._unmarked += len(tail) // ULAW_FRAME_BYTES
            self._turn_frames += len(tail) // ULAW_FRAME_BYTES
        self._queue_mark()  # the reply's last audio is marked: drained() waits for it
        self._reply_done = True
        self._next_turn()

    def _next_turn(self) -> None:
        self._turn += 1
        self._turn_marked = False
        self._turn_frames = 0
        self._turn_ms = 0.0
        self._heard_ms = 0.0

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._queue and self._playout_end <= loop.time() and not self._reply_done:
                # A reply starting from silence waits one resampler block before its first
                # frame: the 24 -> 8 kHz filter emits ~60 ms blocks up to 80 ms apart, and a
                # reply streamed at real time would otherwise run the carrier dry between
                # them (docs/performance.md, "Phone calls per process").
                await asyncio.sleep(PREROLL_SECONDS)
            while self._queue:
                now = loop.time()
                self._playout_end = max(self._playout_end, now)
                ahead = self._playout_end - now
                if ahead >= self._lead:
                    # The carrier holds enough: send the next frame when one has played.
                    await asyncio.sleep(ahead - self._lead + FRAME_SECONDS / 4)
                    continue
                item = self._queue.popleft()
                if isinstance(item, int):
                    message = {"event": "mark", "streamSid": self.stream_sid,
                               "mark": {"name": str(item)}}  # fmt: skip
                else:
                    message = {"event": "media", "streamSid": self.stream_sid,
                               "media": {"payload": base64.b64encode(item).decode()}}  # fmt: skip
                    self._playout_end += FRAME_SECONDS
                try:
                    await self._send(json.dumps(message, separators=(",", ":")))
                except Exception:  # the stream closed: nothing more to play
                    log.info("phone stream %s closed during playback", self.stream_sid)
                    self._queue.clear()
                    return
