"""What the parts of one Live session share: its state, sending, closing, and the
fault-injected drops. `LiveSession` (session.py) combines the parts: it reads client
messages, `TurnEngine` (turns.py) answers them, `ConnectionLifecycle` (lifecycle.py)
ends the connection (timers, faults, black holes)."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from voice_platform.live_emulator import model, protocol
from voice_platform.live_emulator.config import EmulatorConfig
from voice_platform.live_emulator.delivery import DelayLine, Outbox
from voice_platform.live_emulator.faults import Faults
from voice_platform.live_emulator.model import PlannedCall
from voice_platform.live_emulator.pong import PongPolicy
from voice_platform.live_emulator.recorder import PaceStats, SessionRecord
from voice_platform.live_emulator.resumption import HandleStore, SessionState
from voice_platform.live_emulator.stalls import StallPlan

TurnJob = Callable[[], Awaitable[None]]
logger = logging.getLogger(__name__)
# Name of the tasks that run a delayed `drop_after_tool_call` / `_response`.
DROP_TIMER_TASK = "live-emulator-drop-timer"


class TurnAborted(Exception):
    """The turn in progress cannot go on: the session is closing the connection."""


@dataclass
class Usage:
    """Token counts of the turn in progress, reported on its `turnComplete`."""

    prompt_text: int = 0
    prompt_audio: int = 0
    response: int = 0


class SessionBase:
    def __init__(
        self,
        ws: ServerConnection,
        *,
        config: EmulatorConfig,
        setup: dict[str, Any],
        state: SessionState,
        record: SessionRecord,
        handles: HandleStore,
        faults: Faults,
        pace_stats: PaceStats | None = None,
        rng: random.Random | None = None,
        outbox: Outbox | None = None,
        pongs: PongPolicy | None = None,
    ) -> None:
        self.ws = ws
        self.config = config
        self.setup = setup
        self.state = state
        self.record = record
        self.handles = handles
        self.faults = faults
        self.pace_stats = pace_stats
        self.pace = faults.pace if faults.pace is not None else config.pace
        self.rng = rng or random.Random()  # noqa: S311 - simulated behaviour, not security
        self.outbox = outbox or Outbox(ws, record)
        self.pongs = pongs

        generation = setup.get("generationConfig") or {}
        modalities = generation.get("responseModalities") or ["AUDIO"]
        self.modality = "TEXT" if str(modalities[0]).upper() == "TEXT" else "AUDIO"
        self.functions = model.declared_functions(setup)
        self.input_transcription = "inputAudioTranscription" in setup
        self.output_transcription = "outputAudioTranscription" in setup
        self.resumable = "sessionResumption" in setup
        self.compression = compression_window(
            setup.get("contextWindowCompression"), config.context_window_tokens
        )
        realtime = setup.get("realtimeInputConfig") or {}
        self.interrupts = realtime.get("activityHandling") != "NO_INTERRUPTION"

        self.jobs: asyncio.Queue[TurnJob] = asyncio.Queue()
        self.current: asyncio.Task[None] | None = None
        self.usage = Usage()
        # Blocking calls of the turn in progress, and their answers.
        self.waiting: dict[str, PlannedCall] = {}
        self.answers: dict[str, Any] = {}
        self.answered = asyncio.Event()
        # NON_BLOCKING calls still running on the client: id -> name.
        self.background: dict[str, str] = {}
        self.stalls = StallPlan(config=config, faults=faults, rng=self.rng)
        # Streamed input transcript pieces wait here for `input_transcript_lag`.
        self.pieces = DelayLine()
        self.dark = False
        # Fault injection: the connection was aborted (nothing more is sent), the pending
        # `drop_after_tool_*` timers, and which of those faults were armed already.
        self.dropped = False
        self.drop_timers: set[asyncio.Task[None]] = set()
        self.armed: set[str] = set()
        self.turns_completed = 0  # turnComplete messages sent (drop_before_handle)
        self.ended = False
        self._init_input()

    def _init_input(self) -> None:
        """State of the input side (session.py): VAD, turn audio, transcripts."""

    async def close(self, code: int, reason: str, by: str = "server") -> None:
        self._cancel_drop_timers()
        self.record.close(code, reason, by)
        await self.outbox.drain()
        await self.ws.close(code, protocol.truncate_reason(reason))

    async def send(self, message: dict[str, Any]) -> None:
        if self.dark:
            # A black hole never answers again; park the caller until it is cancelled.
            await asyncio.Event().wait()
        if self.dropped:
            # Nothing goes out after a drop: fail as a send on the closed connection does
            # (websockets raises ConnectionClosed once the abort is processed).
            await self.ws.wait_closed()
            await self.ws.send(protocol.encode(message), text=False)
            return
        await self.outbox.send(message)

    def _drop(self, reason: str) -> None:
        """Abort the TCP connection without a close frame (the client sees 1006)."""
        if self.dropped or self.dark or self.ended or self.ws.state is not State.OPEN:
            return  # already ended, or ending, for another reason
        self.dropped = True
        self.record.close(1006, reason, "fault")
        self.outbox.discard()
        self.ws.transport.abort()

    def _tool_fault(self, kind: str, delay: float | None) -> bool:
        """Arm `drop_after_tool_call` / `_response` on the first `kind` ("toolCall" sent,
        "toolResponse" received) of the connection. True if it dropped the connection now."""
        if delay is None or kind in self.armed:
            return False
        self.armed.add(kind)
        reason = f"dropped by fault injection after {kind}"
        if delay <= 0:
            self._drop(reason)
            return True
        if not self.ended and not math.isinf(delay):
            later = self._drop_later(self.config.scaled(delay), reason)
            timer = asyncio.create_task(later, name=DROP_TIMER_TASK)
            self.drop_timers.add(timer)
            timer.add_done_callback(self.drop_timers.discard)
        return False

    async def _drop_later(self, delay: float, reason: str) -> None:
        await asyncio.sleep(delay)
        self._drop(reason)

    def _cancel_drop_timers(self) -> None:
        """The connection ends (or goes dark) another way: pending drops must not fire."""
        for timer in list(self.drop_timers):
            timer.cancel()


def compression_window(setting: object, context_window_tokens: int) -> tuple[int, int] | None:
    """(trigger, target) tokens of `contextWindowCompression`, or None without it."""
    if not isinstance(setting, dict):
        return None
    trigger = setting.get("triggerTokens")
    if not isinstance(trigger, int) or trigger <= 0:
        trigger = int(context_window_tokens * 0.8)
    window = setting.get("slidingWindow") or {}
    target = window.get("targetTokens") if isinstance(window, dict) else None
    if not isinstance(target, int) or target < 0:
        target = trigger // 2
    return trigger, target


async def quietly(work: Awaitable[None]) -> None:
    """Background work of a session ends silently when the client has gone."""
    try:
        await work
    except (ConnectionClosed, TurnAborted):
        pass
    except Exception:
        logger.exception("live emulator session task failed")
