"""Client -> upstream buffering: bounded while upstream is away, replayable after a fault.

Three bounded lists:
- ``pending``: new client input not yet sent (before the upstream is ready, or while it
  reconnects). At most ``max_pending_audio`` bytes of audio (2 s at 16 kHz): the oldest
  audio is dropped first.
- ``unacknowledged``: sent since the last turn the upstream saved in a resumption handle
  (at most ``max_unacknowledged_audio``, 30 s). While it holds nothing but silence (the
  user listening), only the last ``REPLAY_PREFIX_BYTES`` of it are kept: a replay leaves
  the rest out anyway (``_trim_leading_silence``), and 30 s of kept silence was ~1 MiB per
  session (docs/memory.md).
- ``replay``: after a reconnect, the items of the turn in flight (``replay_current_turn``;
  the bridge tells the model the turns answered since the handle as context instead),
  sent before anything in ``pending`` and paced to real time by the bridge. Kept apart so
  the 2 s bound on new input never eats the turn being replayed (``pending`` may grow by
  the replay's length until the backlog is caught up). ``replay_unacknowledged`` replays
  the whole unacknowledged span and rewinds the position to the handle; the bridge no
  longer uses it.

It also keeps the conversation's **position** (``turn_position``), what a tool call's
idempotency key names as "the turn it answers": the number of model turns completed. After
``replay_current_turn`` the completed turns count as saved (the model has them as
context), so the turn in flight is asked again at the position it had and its calls keep
their keys. A turn replayed from the database on another process carries the position it
had (``UplinkItem.position``) and restores it when sent.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from dataclasses import dataclass
from typing import Any

from sessions.relay.speech import is_silent

AUDIO_BYTES_PER_SECOND = 16_000 * 2
# Silence kept before the first speech of a replayed turn (a VAD's prefix padding).
REPLAY_PREFIX_BYTES = AUDIO_BYTES_PER_SECOND * 3 // 10


class ItemKind(enum.StrEnum):
    AUDIO = "audio"
    TEXT = "text"
    AUDIO_END = "audio_end"
    ACTIVITY_START = "activity_start"
    ACTIVITY_END = "activity_end"


@dataclass(frozen=True, slots=True)  # slots: up to 300 of these are kept per session
class UplinkItem:
    kind: ItemKind
    payload: Any = None
    position: int | None = None  # a replayed turn: the conversation position it answers

    @property
    def audio_bytes(self) -> int:
        return len(self.payload) if self.kind is ItemKind.AUDIO else 0


class Uplink:
    def __init__(
        self,
        *,
        max_pending_audio: int = 2 * AUDIO_BYTES_PER_SECOND,
        max_unacknowledged_audio: int = 30 * AUDIO_BYTES_PER_SECOND,
        max_control_items: int = 200,
        acked_turns: int = 0,
    ) -> None:
        self.max_pending_audio = max_pending_audio
        self.max_unacknowledged_audio = max_unacknowledged_audio
        self.max_control_items = max_control_items
        self.pending: deque[UplinkItem] = deque()
        self.replay: deque[UplinkItem] = deque()
        self.unacknowledged: deque[UplinkItem] = deque()
        self._pending_audio = 0
        self._unack_audio = 0
        self._turn_mark = 0  # how many unacknowledged items a completed turn covers
        # Bytes of ``unacknowledged`` while all of it is silent audio (then trimmed as it
        # goes); None once anything else is in it, until it is emptied again.
        self._silent_lead: int | None = 0
        self.dropped_audio_frames = 0
        self._available = asyncio.Event()
        self.acked_turns = acked_turns  # model turns a saved handle covers
        self._turns_since_ack = 0  # model turns completed since (forgotten on a reconnect)
        self._turns_mark = 0  # how many of those the next handle covers
        # While a replay drains at real time, live input queues behind it: the pending bound
        # grows by the replay's length until the backlog is caught up.
        self._backlog_allowance = 0

    @property
    def turn_position(self) -> int:
        return self.acked_turns + self._turns_since_ack

    def put(self, item: UplinkItem) -> None:
        self.pending.append(item)
        self._pending_audio += item.audio_bytes
        limit = self.max_pending_audio + self._backlog_allowance
        while self._pending_audio > limit or len(self.pending) > self.max_control_items:
            if not self._drop_oldest_audio():
                break
        self._available.set()

    def _drop_oldest_audio(self) -> bool:
        for index, queued in enumerate(self.pending):
            if queued.kind is ItemKind.AUDIO:
                del self.pending[index]
                self._pending_audio -= queued.audio_bytes
                self.dropped_audio_frames += 1
                return True
        return False

    async def next(self) -> UplinkItem:
        while not self.replay and not self.pending:
            self._available.clear()
            await self._available.wait()
        return self.replay[0] if self.replay else self.pending[0]

    def is_head(self, item: UplinkItem) -> bool:
        if self.replay:
            return self.replay[0] is item
        return bool(self.pending) and self.pending[0] is item

    @property
    def idle(self) -> bool:
        """Nothing waits to be sent: a new item may go straight up, ahead of no one."""
        return not self.replay and not self.pending

    def sent(self, item: UplinkItem) -> None:
        """``item`` (the head of replay, else of pending, or one sent directly while both
        were empty) reached the upstream."""
        if self.replay and self.replay[0] is item:
            self.replay.popleft()
        elif self.pending and self.pending[0] is item:
            self.pending.popleft()
            self._pending_audio -= item.audio_bytes
        if not self.replay and self._pending_audio <= self.max_pending_audio:
            self._backlog_allowance = 0  # caught up
        if item.position is not None:
            self.acked_turns, self._turns_since_ack, self._turns_mark = item.position, 0, 0
        self.unacknowledged.append(item)
        self._unack_audio += item.audio_bytes
        if self._silent_lead is not None:
            self._trim_silent_lead(item)
        while self._unack_audio > self.max_unacknowledged_audio and self.unacknowledged:
            old = self.unacknowledged.popleft()
            self._unack_audio -= old.audio_bytes
            self._turn_mark = max(0, self._turn_mark - 1)
            if self._silent_lead is not None:
                self._silent_lead -= old.audio_bytes

    def _trim_silent_lead(self, item: UplinkItem) -> None:
        """``item`` was just added while all that was kept was silence. If it is silence too,
        forget the oldest silence a replay would leave out (it keeps ``REPLAY_PREFIX_BYTES``
        before the turn's first speech); anything else starts the turn, and from then on
        nothing is left out. Nor while a completed turn is held (``replay_unacknowledged``
        replays it with what follows)."""
        if self._turn_mark or item.kind is not ItemKind.AUDIO or not is_silent(item.payload):
            self._silent_lead = None
            return
        lead = self._silent_lead = (self._silent_lead or 0) + item.audio_bytes
        unacked = self.unacknowledged
        while lead - unacked[0].audio_bytes >= REPLAY_PREFIX_BYTES:
            lead -= unacked.popleft().audio_bytes
        self._unack_audio -= self._silent_lead - lead
        self._silent_lead = lead

    def current_turn(self) -> list[UplinkItem]:
        """What was sent since the model last completed a turn: the user's turn in progress."""
        return list(self.unacknowledged)[self._turn_mark :]

    def turn_complete(self) -> None:
        """The model finished a turn: what was sent so far belongs to saved history once the
        next resumption handle arrives."""
        self._turn_mark = len(self.unacknowledged)
        self._turns_since_ack += 1
        self._turns_mark = self._turns_since_ack

    def handle_saved(self) -> None:
        covered = self._turn_mark
        for _ in range(self._turn_mark):
            old = self.unacknowledged.popleft()
            self._unack_audio -= old.audio_bytes
        self._turn_mark = 0
        self.acked_turns += self._turns_mark
        self._turns_since_ack -= self._turns_mark
        self._turns_mark = 0
        if covered:
            # What was sent since the turn completed (usually a frame or two, or nothing)
            # starts the next turn: its silence may be trimmed from now on.
            rest = list(self.unacknowledged)
            self.unacknowledged.clear()
            self._unack_audio, self._silent_lead = 0, 0
            for item in rest:
                self.unacknowledged.append(item)
                self._unack_audio += item.audio_bytes
                if self._silent_lead is not None:
                    self._trim_silent_lead(item)

    def skip_head(self, item: UplinkItem) -> None:
        """Leave out ``item`` (the head: a frame of silence while catching up)."""
        if self.replay and self.replay[0] is item:
            self.replay.popleft()
        elif self.pending and self.pending[0] is item:
            self.pending.popleft()
            self._pending_audio -= item.audio_bytes

    def replay_unacknowledged(self) -> None:
        """After a reconnect: send the unacknowledged items again, before anything newer.
        What an interrupted earlier replay did not send yet follows them (it is newer)."""
        self._start_replay([*self.unacknowledged, *self.replay])
        self._turns_since_ack = self._turns_mark = 0  # the upstream is back at the handle

    def replay_current_turn(self) -> None:
        """After a reconnect to a fresh upstream session seeded with the completed turns:
        only the turn in progress is asked again; the completed ones count as saved."""
        current = list(self.unacknowledged)[self._turn_mark :]
        self._start_replay([*current, *self.replay])
        self.acked_turns += self._turns_since_ack
        self._turns_since_ack = self._turns_mark = 0

    def replays_audio(self) -> bool:
        return any(item.kind is ItemKind.AUDIO for item in self.replay)

    def _start_replay(self, items: list[UplinkItem]) -> None:
        self.replay = deque(_trim_leading_silence(items))
        self.unacknowledged.clear()
        self._unack_audio = 0
        self._turn_mark = 0
        self._silent_lead = 0
        self._backlog_allowance = sum(item.audio_bytes for item in self.replay)
        if self.replay:
            self._available.set()


def _trim_leading_silence(items: list[UplinkItem]) -> list[UplinkItem]:
    """Drop the silence before the first speech (or text or control item) of a replay (a mic
    streams it between turns; replayed at real time it would only delay the turn), keeping
    a short prefix."""
    first_loud = None
    for index, item in enumerate(items):
        # A text or control item starts the turn like speech does: the silence before it
        # is left out the same way (kept silence is trimmed as it goes, see sent()).
        if item.kind is not ItemKind.AUDIO or not is_silent(item.payload):
            first_loud = index
            break
    if first_loud is None:
        # Only silence (or nothing): none of it is worth replaying, except non-audio items.
        return [item for item in items if item.kind is not ItemKind.AUDIO]
    start, kept = first_loud, 0
    while start > 0 and kept < REPLAY_PREFIX_BYTES:
        start -= 1
        kept += items[start].audio_bytes
    return items[start:]
