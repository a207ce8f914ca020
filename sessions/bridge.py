"""``LiveBridge``: one end user's live session, between the consumer and the upstream.

The consumer hands it client frames and gives it a ``ClientSink`` to answer through; the
bridge owns the upstream (``LiveUpstream``), the uplink buffer, counters, the transcript
buffer and the session's timers. Every event to the client passes through ``emit`` (the
seam for metrics and webhooks). Nothing here blocks the event loop: database work goes
through one sequential worker task per session, never per audio frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from django.utils import timezone
from google.genai import types
from google.genai.live import AsyncSession

from agents.live_config import compression_enabled
from sessions import client_events
from sessions.close_codes import CloseCode
from sessions.db_retry import db_write_retrying
from sessions.models import VoiceSession
from sessions.reaper import held_sessions
from sessions.relay import sdk_adapter
from sessions.relay.pacer import AudioPacer
from sessions.relay.speech import (
    SILENCE_THRESHOLD,
    SpeechDetector,
    SpeechEvent,
    is_silent,
    rms,
)
from sessions.relay.upstream import (
    ConnectFactory,
    LiveUpstream,
    UpstreamSettings,
    UpstreamState,
)
from sessions.selectors import transcript_tail
from sessions.services import (
    COUNTER_FIELDS,
    SessionGrant,
    SessionProgress,
    voice_session_detach,
    voice_session_drop_replay,
    voice_session_end,
    voice_session_flush,
    voice_session_promote_resume_token,
    voice_session_save_handle,
    voice_session_save_replay,
    voice_session_set_status,
)
from sessions.tool_gateway import NoTools, ToolGateway
from sessions.turn_timing import PLAYBACK_WAIT_SECONDS, TurnClock, TurnTiming
from sessions.uplink import ItemKind, Uplink, UplinkItem
from voice_platform.db_threads import db_async
from voice_platform.observability import log_context
from voice_platform.observability.labels import SessionLabels
from voice_platform.observability.telemetry import SessionTelemetry

log = logging.getLogger(__name__)

WARN_AT = 0.8
SEED_READ_TIMEOUT = 3.0  # seconds a fresh session waits for the stored transcript


class ClientSink(Protocol):
    """A transport to the end user: the browser's WebSocket, or a phone call's media stream."""

    async def send_event(self, event: dict[str, Any]) -> None: ...

    async def send_audio(self, pcm: bytes) -> None: ...

    async def close_connection(self, code: int) -> None: ...

    def output_heard_share(self) -> float | None:
        """Of the reply audio sent this turn, the share the user has heard (0..1), or None
        when the transport cannot tell. Asked at a barge-in: the stored transcript of the
        cut reply keeps only what was heard."""
        ...


@dataclass(frozen=True)
class BridgeConfig:
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings)
    pending_audio_seconds: float = 2.0
    # Audio may run this far ahead of real time before it waits (replay, backlog).
    audio_lead_seconds: float = 0.3
    # A fresh upstream session is seeded with at most this much of the stored transcript.
    seed_max_chars: int = 20_000
    # The ``retry_after`` hint of a ``busy`` error: uniform in [busy_retry, 2 * busy_retry].
    busy_retry_seconds: float = 10.0


@dataclass
class _Utterance:
    role: str
    kind: str
    at: Any
    parts: list[str] = field(default_factory=list)


async def _send_item(session: AsyncSession, item: UplinkItem) -> None:
    if item.kind is ItemKind.AUDIO:
        await sdk_adapter.send_audio_frame(session, item.payload)
    elif item.kind is ItemKind.TEXT:
        text, turn_complete = item.payload
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text=text)]),
            turn_complete=turn_complete,
        )
    elif item.kind is ItemKind.AUDIO_END:
        await session.send_realtime_input(audio_stream_end=True)
    elif item.kind is ItemKind.ACTIVITY_START:
        await session.send_realtime_input(activity_start=types.ActivityStart())
    elif item.kind is ItemKind.ACTIVITY_END:
        await session.send_realtime_input(activity_end=types.ActivityEnd())


def _socket_backed_up(session: AsyncSession) -> bool:
    return sdk_adapter.socket_backed_up(session)


class LiveBridge:
    def __init__(
        self,
        *,
        grant: SessionGrant,
        sink: ClientSink,
        channel_name: str,
        connect: ConnectFactory,
        config: BridgeConfig | None = None,
        tools: ToolGateway | None = None,
        began_at: float | None = None,
    ) -> None:
        self.grant = grant
        # When the client's connection reached us (time.monotonic()): times the start.
        self.began_at = began_at
        self.session_id = grant.session.pk
        self.agent = grant.agent
        self.sink = sink
        self.channel_name = channel_name
        self.config = config or BridgeConfig()
        self.tools: ToolGateway = tools or NoTools()
        self.tools.observe(self)
        self.telemetry = SessionTelemetry(
            SessionLabels(
                tenant_id=grant.tenant.pk,
                tenant_slug=grant.tenant.slug,
                agent_id=grant.agent.pk,
                session_id=str(grant.session.pk),
                model=grant.agent.model,
                modality=grant.agent.response_modality,
            ),
            resumed=grant.resumed,
        )
        # Every log line of this connection's tasks carries these ids (and the turn).
        self._log = log_context.bind_session(
            tenant=grant.tenant.pk, agent=grant.agent.pk, session=str(grant.session.pk)
        )
        # Turns are numbered per session: a resumed connection goes on from the stored count.
        kept = grant.session.turn_timings  # the newest TURN_TIMINGS_KEPT only: the last one
        last = kept[-1].get("turn", 0) if kept and isinstance(kept[-1], dict) else 0
        self.clock = TurnClock(on_finished=self._turn_timed, first_turn=int(last) + 1)
        self._vad_end_taken = 0.0  # the speech end (VAD) a turn was already opened at
        self._log_turn = 0
        self._playback_timer: asyncio.TimerHandle | None = None
        # What this connection measured since its last flush (flushed as deltas).
        self.counters = dict.fromkeys(COUNTER_FIELDS, 0)
        self.progress = SessionProgress(counters=self.counters)
        self._dropped_flushed = 0
        self.uplink = Uplink(
            max_pending_audio=int(self.config.pending_audio_seconds * 32_000),
            # Past every position an earlier connection's tool calls used: a new request
            # never takes an old one's key (the replayed turn below brings its own).
            acked_turns=self.tools.first_turn(),
        )
        session = grant.session
        if session.replay_text and session.replay_turn is not None:
            # A turn whose tool calls started on a connection that is gone (another process,
            # or a client that dropped): asked again first, at the position it had, so the
            # model asks for the calls again and gets their stored outcomes.
            self.uplink.put(
                UplinkItem(ItemKind.TEXT, (session.replay_text, True), session.replay_turn)
            )
        self._replay_saved_at: int | None = session.replay_turn
        self._turn_heard: list[str] = []  # input transcription of the turn in progress
        self._uplink_sending = False  # a send to the upstream is in progress (either path)
        upstream_settings = self.config.upstream
        if compression_enabled(self.agent):
            # Compression lifts the session limit: a 1011 at that age is no limit then.
            upstream_settings = replace(upstream_settings, session_limit=0.0)
        self.upstream = LiveUpstream(
            connect=connect,
            listener=self,
            settings=upstream_settings,
            handle=grant.session.resumption_handle or None,
            prior_context=grant.resumed,
        )
        self.closed = asyncio.Event()
        self._started = False
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._db_jobs: asyncio.Queue[Callable[[], Any] | None] = asyncio.Queue()
        self._handle_to_save: str | None = None
        self._in_outage = False
        self._context_warned = False
        self._utterances: dict[tuple[str, str], _Utterance] = {}
        # The words of the turn in progress, and of the turns answered since the newest
        # handle: a resume at that handle is told the latter as context.
        self._turn_entries: list[tuple[str, str]] = []
        self._answered_since_handle: list[tuple[str, str]] = []
        # Usage of the turn in progress: Gemini may report it more than once per turn, each
        # time the turn's running total, so only the growth is added to the counters.
        self._turn_usage = (0, 0, 0)
        # The user's speech as it goes up (agents with the service's own VAD): its end is
        # when a reply becomes due. Replayed and backlogged audio is paced to real time.
        silence_ms = self.agent.vad_silence_duration_ms or 500
        self._speech = SpeechDetector(silence_ms=silence_ms) if self.agent.vad_enabled else None
        self._pacer = AudioPacer(lead=self.config.audio_lead_seconds)
        self._keep_silence = silence_ms / 1000 + 0.5  # of a backlog's silence, while catching up
        self._silent_run = 0.0
        # The outage in progress: its first cause and when it began.
        self._outage: tuple[str, float] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        held_sessions.add(self.session_id)
        self._spawn(self._db_worker(), "db")
        self._spawn(self._uplink_loop(), "uplink")
        self._spawn(self._duration_watch(), "duration")
        self.upstream.start()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=f"bridge-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def emit(self, event: dict[str, Any]) -> None:
        """The one place every JSON event to the client passes."""
        if self.closed.is_set():
            return
        try:
            await self.sink.send_event(event)
        except Exception:  # the client is gone: its disconnect detaches or ends the session
            log.debug("session %s: event not delivered, the client is gone", self.session_id)

    async def end(
        self,
        *,
        reason: str,
        code: int = CloseCode.NORMAL,
        status: VoiceSession.Status = VoiceSession.Status.ENDED,
        error: dict[str, Any] | None = None,
    ) -> None:
        """End the session for good: upstream closed, row ended, client told and closed."""
        failed = status == VoiceSession.Status.FAILED
        if not await self._begin_shutdown(ended_reason=reason, failed=failed):
            return
        try:
            progress = self._final_progress()
            await db_write_retrying(
                lambda: voice_session_end(
                    session_id=self.session_id,
                    channel_name=self.channel_name,
                    status=status,
                    reason=reason,
                    progress=progress,
                ),
                what=f"session {self.session_id}: its end",
            )
        except Exception:  # the client is closed regardless; the reaper ends the row later
            log.exception("session %s: could not record its end", self.session_id)
        finally:
            await self._close_client(reason, code, error)

    async def detach(self) -> None:
        """The client vanished without "close": keep the session resumable."""
        if not await self._begin_shutdown():
            return
        try:
            await self._record_detach()
        except Exception:  # without a heartbeat the reaper detaches it after STALE_AFTER
            log.exception("session %s: could not record the detach", self.session_id)
        finally:
            self.closed.set()

    async def server_restart(self) -> None:
        """This server process is stopping: the session stays resumable on another one.

        The user's turn in flight is kept for replay first (the model's saved history ends
        at the last handle, so a resume elsewhere would lose it), the detach is recorded,
        and the client is told ``session.ended`` ``server_restart`` and closed with 4012,
        so it resumes at once rather than waiting for a timeout."""
        turn = self.uplink.turn_position
        text = self._turn_in_flight_text()
        try:
            if not await self._begin_shutdown():
                return
        except asyncio.CancelledError:
            # Out of grace while the shutdown waited for a database write that never returns
            # (the database black-holed): the client is told all the same, and resumes
            # elsewhere; the reaper records the detach.
            await self._close_client("server_restart", CloseCode.SERVER_RESTART, None)
            raise
        try:
            if text and self._replay_saved_at != turn:
                await db_write_retrying(
                    lambda: voice_session_save_replay(
                        session_id=self.session_id,
                        channel_name=self.channel_name,
                        text=text,
                        turn=turn,
                    ),
                    what=f"session {self.session_id}: its turn in flight",
                )
            await self._record_detach()
        except Exception:  # without a heartbeat the reaper detaches it after STALE_AFTER
            log.exception("session %s: could not record the restart", self.session_id)
        finally:
            await self._close_client("server_restart", CloseCode.SERVER_RESTART, None)

    async def _record_detach(self) -> None:
        progress = self._final_progress()
        await db_write_retrying(
            lambda: voice_session_detach(
                session_id=self.session_id, channel_name=self.channel_name, progress=progress
            ),
            what=f"session {self.session_id}: its detach",
        )

    async def superseded(self) -> None:
        """Another connection holds this session now: step aside without ending it."""
        if not await self._begin_shutdown():
            return
        try:
            progress = self._final_progress()
            await db_write_retrying(
                lambda: voice_session_flush(session_id=self.session_id, progress=progress),
                what=f"session {self.session_id}: its flush",
            )
        except Exception:
            log.exception("session %s: could not flush on supersede", self.session_id)
        finally:
            await self._close_client("superseded", CloseCode.SUPERSEDED, None)

    async def _begin_shutdown(self, ended_reason: str | None = None, failed: bool = False) -> bool:
        if self._closing:
            await self.closed.wait()
            return False
        self._closing = True
        held_sessions.discard(self.session_id)
        if self._playback_timer is not None:
            self._playback_timer.cancel()
        await self.upstream.stop()
        await self.tools.close()
        await self._db_jobs.put(None)
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            if task.get_name() != "bridge-db":
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # What the connection still holds is final now: its words, an outage that never
        # ended, the turn in progress; telemetry hears of them before its spans close.
        self._finish_utterances()
        if self._outage is not None:  # ended mid-outage: the reconnect never completed
            self._record_reconnect(False, resumed=False)
        self.clock.close()
        self.telemetry.closed(ended_reason=ended_reason, failed=failed)
        return True

    async def _close_client(self, reason: str, code: int, error: dict[str, Any] | None) -> None:
        with contextlib.suppress(Exception):  # the client may be gone already
            if error is not None:
                await self.sink.send_event(error)
            await self.sink.send_event(client_events.session_ended(reason))
            await self.sink.close_connection(code)
        self.closed.set()

    def _final_progress(self) -> SessionProgress:
        return self._snapshot()  # _begin_shutdown finished what was in progress

    def _snapshot(self) -> SessionProgress:
        """Hand what accumulated to the database thread as deltas; the loop goes on with
        fresh counters and lists, so the two never touch the same objects."""
        dropped = self.uplink.dropped_audio_frames
        self.counters["dropped_audio_frames"] += dropped - self._dropped_flushed
        self._dropped_flushed = dropped
        self.clock.tick()
        self.telemetry.traffic(self.counters)
        snapshot = SessionProgress(
            counters=self.counters,
            first_response_ms=self.progress.first_response_ms,
            transcript=self.progress.transcript,
            reconnects=self.progress.reconnects,
            turn_timings=self.progress.turn_timings,
        )
        self.counters = self.progress.counters = dict.fromkeys(COUNTER_FIELDS, 0)
        self.progress.first_response_ms = []
        self.progress.transcript = []
        self.progress.reconnects = []
        self.progress.turn_timings = []
        return snapshot

    # --- client -> upstream ---------------------------------------------------------------------

    async def client_audio(self, pcm: bytes) -> None:
        """One frame of client audio up: sent at once when nothing is queued ahead of it.

        The common case (upstream ready, uplink idle) writes straight to the upstream socket
        from here instead of waking the uplink task, which cost a trip through the event
        loop's ready queue per frame (the tail of the up latency under load). Anything else
        queues; the uplink task keeps the order.
        """
        self.counters["client_frames_in"] += 1
        self.counters["client_bytes_in"] += len(pcm)
        item = UplinkItem(ItemKind.AUDIO, pcm)
        session = self.upstream.session if self.upstream.ready.is_set() else None
        if (
            session is None
            or self._uplink_sending
            or not self.uplink.idle
            or _socket_backed_up(session)  # a send could wait: keep the consumer free
            or self._pacer.wait_for(len(pcm)) > 0  # a backlog is still draining
        ):
            self.uplink.put(item)
            return
        self._uplink_sending = True
        try:
            await _send_item(session, item)
        except Exception:  # the connection died under us: the uplink task retries it
            self.uplink.put(item)
            return
        finally:
            self._uplink_sending = False
        self.uplink.sent(item)
        self._item_sent(item)

    def client_text(self, text: str, turn_complete: bool) -> None:
        self._append_utterance("user", "text", text)
        if turn_complete:
            self._finish_utterance("user", "text")
            self._speech_ended("text")
        self.uplink.put(UplinkItem(ItemKind.TEXT, (text, turn_complete)))

    def client_control(self, kind: ItemKind) -> None:
        self.uplink.put(UplinkItem(kind))  # its turn timing starts when it goes up

    def prompt_model(self, text: str) -> None:
        """A cue to the model that the user did not say (a phone call's greeting): it asks
        for a reply, and is not stored in the transcript."""
        self.uplink.put(UplinkItem(ItemKind.TEXT, (text, True)))

    def client_playback_started(self) -> None:
        """The client began playing the reply: voice-to-voice for its turn."""
        self._flushing_new_timings(self.clock.playback_started)

    def _flushing_new_timings(self, step: Callable[[], Any]) -> None:
        """Run a clock step; a turn it finished is stored now, not with the next turn's."""
        before = len(self.progress.turn_timings)
        step()
        if len(self.progress.turn_timings) > before and not self._closing:
            self._db(self._flush_job(self._snapshot()))

    def _wait_for_playback(self) -> None:
        """A finished audio turn waits for its playback report, PLAYBACK_WAIT_SECONDS at
        most; then it is stored without it."""
        if self._playback_timer is not None:
            self._playback_timer.cancel()
        self._playback_timer = None
        if self.clock.awaiting_playback:
            self._playback_timer = asyncio.get_running_loop().call_later(
                PLAYBACK_WAIT_SECONDS + 0.05, self._playback_wait_over
            )

    def _playback_wait_over(self) -> None:
        self._playback_timer = None
        self._flushing_new_timings(self.clock.playback_wait_over)

    def _speech_ended(self, source: str, at: float | None = None) -> None:
        """The user's turn ended (docs/observability.md: where each source comes from)."""
        self.clock.speech_ended(source, at)
        if self.clock.turn_number != self._log_turn:
            self._log_turn = self.clock.turn_number
            self._log.update(turn=self._log_turn)
            self.telemetry.turn_started(self._log_turn)

    def _turn_timed(self, timing: TurnTiming) -> None:
        """A turn's timing is final: stored with the next flush, and reported."""
        self.progress.turn_timings.append(timing.as_dict())
        if timing.reply_in_ms is not None:
            self.progress.first_response_ms.append(timing.reply_in_ms)
        self.telemetry.turn_finished(timing)

    # --- tools (the gateway reports each call it starts and settles) ---------------------

    def tool_started(self, key: str, name: str, call_id: str | None = None) -> None:
        self.clock.tool_started()
        self.telemetry.tool_started(key, name, call_id)

    def tool_finished(self, key: str, name: str, status: str, seconds: float) -> None:
        self.clock.tool_finished()
        self.telemetry.tool_finished(key, name, status, seconds)

    async def _uplink_loop(self) -> None:
        while True:
            item = await self.uplink.next()
            session = await self.upstream.wait_ready()
            if not self.uplink.is_head(item):
                continue  # dropped (buffer full) or replaced (replay) while we waited
            if item.kind is ItemKind.AUDIO and await self._hold_audio(item):
                continue  # waited for real time, or skipped: look at the head again
            self._uplink_sending = True
            try:
                await _send_item(session, item)
            except Exception:  # the connection died under us: wait for the next one
                await asyncio.sleep(0.05)
                continue
            finally:
                self._uplink_sending = False
            self.uplink.sent(item)
            self._item_sent(item)

    async def _hold_audio(self, item: UplinkItem) -> bool:
        """Pace a backlog to real time (a VAD does not hear a burst as speech); while behind,
        a run of silence longer than the turn-ending pause is skipped. True when the item
        was not sent now (the caller looks at the head again)."""
        wait = self._pacer.wait_for(item.audio_bytes)
        if wait <= 0:
            return False
        if self._silent_run >= self._keep_silence and is_silent(item.payload):
            self.uplink.skip_head(item)
            return True
        await asyncio.sleep(wait)
        return True

    def _item_sent(self, item: UplinkItem) -> None:
        """After an item reached the upstream: pacing, and whether a reply is due now."""
        if item.kind is ItemKind.AUDIO:
            self._pacer.sent(item.audio_bytes)
            speech = self._speech
            event = speech.feed(item.payload) if speech is not None else None
            level = speech.last_frame_level if speech is not None else rms(item.payload)
            silent = level < SILENCE_THRESHOLD
            self._silent_run = self._silent_run + item.audio_bytes / 32_000 if silent else 0.0
            if event is SpeechEvent.START:
                self.upstream.speech_resumed()
            elif event is SpeechEvent.END and speech is not None:
                self._vad_speech_ended(speech.last_speech_at)
                # With transcription on, the service shows it heard speech by transcribing
                # it; until then the turn is only our estimate (perhaps a noise).
                confirmed = not self.agent.input_transcription or bool(self._turn_heard)
                self.upstream.expect_reply(
                    speech_ended_at=speech.last_speech_at, confirmed=confirmed
                )
        elif item.kind is ItemKind.TEXT:
            if item.payload[1]:  # turn_complete
                self.upstream.expect_reply()
        elif item.kind in (ItemKind.AUDIO_END, ItemKind.ACTIVITY_END):
            self._control_sent(item.kind)
            self.upstream.expect_reply()

    def _control_sent(self, kind: ItemKind) -> None:
        """``activity_end`` ends the user's turn; ``audio_end`` only when it cuts speech
        the detector has not seen end yet (a microphone stopped mid-sentence): after a
        turn that already ended, it starts none."""
        if kind is ItemKind.ACTIVITY_END:
            self._speech_ended("activity_end")
            return
        speech = self._speech
        if speech is not None and speech.last_speech_at > self._vad_end_taken:
            self._vad_end_taken = speech.last_speech_at
            self._speech_ended("audio_end", speech.last_speech_at)

    # --- upstream -> client ---------------------------------------------------------------------

    async def on_upstream_state(self, state: UpstreamState, reason: str) -> None:
        if state is UpstreamState.READY:
            await self._upstream_ready()
        elif state is UpstreamState.RECONNECTING:
            # A reply cut by the outage stays open: if its turn is asked again, the new
            # reply replaces it (below, when ready); if not, it is kept as it was.
            self._turn_usage = (0, 0, 0)  # a replayed turn reports its usage afresh
            if self._started and not self._in_outage:  # once per outage, not per retry
                self.clock.outage_began()
                self._in_outage = True
                self._outage = (reason, time.monotonic())
                self._db(self._set_status(VoiceSession.Status.RECONNECTING))
                await self.emit(client_events.simple("session.reconnecting", reason=reason))
        elif state is UpstreamState.FAILED:
            self._spawn(self._upstream_failed(), "fail")

    async def _upstream_ready(self) -> None:
        self._db(self._set_status(VoiceSession.Status.ACTIVE))
        if not self._started:
            self._started = True
            if self.upstream.context_fresh:
                # A resumed call whose handle could not be used: tell the new upstream
                # session what was said before anything else goes up.
                await self._seed_context()
            if self.grant.resumed:
                # Before the client can hold the new token, it must already work.
                await db_async(voice_session_promote_resume_token)(
                    session_id=self.session_id, channel_name=self.channel_name
                )
            await self.emit(
                client_events.session_started(
                    session_id=str(self.session_id),
                    resume_token=self.grant.resume_token,
                    agent_id=self.agent.pk,
                    agent_name=self.agent.name,
                    modality=self.agent.response_modality,
                )
            )
            began = self.began_at
            self.telemetry.started(
                start_seconds=None if began is None else time.monotonic() - began,
                upstream_seconds=self.upstream.handshake_seconds,
            )
        else:
            self._pacer.reset()
            self._silent_run = 0.0
            if self._speech is not None:
                self._speech.reset()
            fresh = self.upstream.context_fresh
            if fresh:
                # A new upstream session: it knows nothing of the call. Tell it what was
                # said, then ask the turn in progress again (completed ones are in the seed).
                await self._seed_context()
                self._answered_since_handle = []  # in the seed
            else:
                # Back at the newest handle: turns answered since it are told as context,
                # not asked again (the user heard their answers already).
                await self._send_context(self._answered_since_handle)
            self.uplink.replay_current_turn()
            if self.uplink.replay:
                # The turn is asked again: its reply (cut by the outage) comes again whole.
                self._utterances.pop(("model", "speech"), None)
                self._utterances.pop(("model", "text"), None)
            else:
                self._finish_utterance("model", "speech")
                self._finish_utterance("model", "text")
            if self.uplink.replays_audio():
                # The server transcribes the replayed audio again: start the words afresh.
                self._utterances.pop(("user", "speech"), None)
            self.tools.on_reconnect()
            self._turn_heard = []  # the replayed turn is heard again
            if self._in_outage:
                self._in_outage = False
                self.clock.outage_ended()
                self.counters["reconnects"] += 1
                self._record_reconnect(fresh)
                await self.emit(client_events.simple("session.resumed", fresh_context=fresh))

    async def _upstream_failed(self) -> None:
        failure = self.upstream.failure
        detail = failure.detail if failure else ""
        reason = failure.reason if failure else "upstream_unavailable"
        if self._outage is not None:
            self._record_reconnect(False, resumed=False)
        if reason == "upstream_busy":
            # Over the model service's quota: say so at once, with a spread-out retry hint,
            # rather than queueing or retrying (a fleet of refused clients must not storm).
            base = self.config.busy_retry_seconds
            await self.end(
                reason="upstream_busy",
                code=CloseCode.BUSY,
                status=VoiceSession.Status.FAILED,
                error=client_events.busy(retry_after=round(random.uniform(base, 2 * base))),  # noqa: S311
            )
            return
        error = client_events.error(reason, detail or "The model service could not be reached.")
        await self.end(
            reason=reason if reason == "upstream_unavailable" else "upstream_error",
            code=CloseCode.UPSTREAM_UNAVAILABLE,
            status=VoiceSession.Status.FAILED,
            error=error,
        )

    async def on_upstream_stall(self, *, recovering: bool) -> None:
        """The model did not answer the user's turn (no reply in time, or an empty
        turnComplete): tell the client whether it is being asked again or given up."""
        if recovering:
            message = "The model did not answer; asking it again."
        else:
            message = "The model did not answer this turn; please say it again."
            self._finish_utterances()  # the given-up turn's words stay with it
            self.clock.turn_complete()  # unanswered
        await self.emit(client_events.warning("reply_stalled", message, recovering=recovering))

    def _record_reconnect(self, fresh: bool, *, resumed: bool = True) -> None:
        if self._outage is None:
            return
        cause, began = self._outage
        self._outage = None
        gap = time.monotonic() - began if resumed else None
        self.progress.reconnects.append(
            {
                "at": timezone.now().isoformat(),
                "cause": cause,
                "gap_ms": round(gap * 1000) if gap is not None else None,
                "fresh_context": fresh,
                "resumed": resumed,
            }
        )
        self.telemetry.reconnected(cause=cause, gap_seconds=gap)

    async def on_upstream_audio(self, pcm: bytes) -> None:
        first = self._first_output(audio=True)
        self.counters["model_frames_out"] += 1
        self.counters["model_bytes_out"] += len(pcm)
        if not self.closed.is_set():
            await self.sink.send_audio(pcm)
            if first:
                self.clock.reply_out()

    async def on_upstream_message(self, message: types.LiveServerMessage) -> None:
        content = message.server_content
        if content is not None:
            await self._on_content(content)
        if message.tool_call is not None and message.tool_call.function_calls:
            calls = message.tool_call.function_calls
            self.counters["tool_calls"] += len(calls)
            connection = self.upstream.connections
            turn = self.uplink.turn_position
            await self._keep_for_replay(turn)
            await self.tools.on_tool_call(
                calls, lambda r: self._send_tool_responses(r, connection), self.emit, turn
            )
        if message.tool_call_cancellation is not None:
            await self.tools.on_cancellation(message.tool_call_cancellation.ids or [], self.emit)
        if message.usage_metadata is not None:
            await self._on_usage(message.usage_metadata)
        stalled = self.upstream.stalled_turn  # an empty turnComplete, being asked again
        if content is not None and content.turn_complete:
            self._turn_usage = (0, 0, 0)
            if not stalled:
                await self._on_turn_complete()  # after usage: the client sees it first
        update = message.session_resumption_update
        if update is not None and update.resumable and update.new_handle and not stalled:
            self.uplink.handle_saved()
            self._answered_since_handle = []
            self._handle_to_save = update.new_handle
            self._db(self._save_handle)
            self._drop_covered_replay()

    async def _on_content(self, content: types.LiveServerContent) -> None:
        if content.model_turn is not None and content.model_turn.parts:
            for part in content.model_turn.parts:
                if part.inline_data is not None and part.inline_data.data:
                    await self.on_upstream_audio(part.inline_data.data)
                elif part.text and not part.thought:
                    first = self._first_output(audio=False)
                    self._append_utterance("model", "text", part.text)
                    await self.emit(client_events.simple("text", text=part.text))
                    if first:
                        self.clock.reply_out()
        if content.input_transcription is not None and content.input_transcription.text:
            text = content.input_transcription.text
            # Pieces stream in during speech and may lag into the reply: the user's words
            # stay one utterance until the turn completes, stored before the model's.
            self._append_utterance("user", "speech", text)
            self._turn_heard.append(text)
            self.upstream.speech_heard()
            await self.emit(client_events.simple("transcript.input", text=text))
        if content.output_transcription is not None and content.output_transcription.text:
            text = content.output_transcription.text
            self._append_utterance("model", "speech", text)
            await self.emit(client_events.simple("transcript.output", text=text))
        if content.interrupted:
            self.counters["interruptions"] += 1
            self._cut_unheard_output()
            # The user's words of the cut turn, then the cut reply; the barge-in's words
            # start a new utterance. Before the turn's timing: its trace span takes them.
            self._finish_utterances()
            self.clock.turn_complete(interrupted=True)
            self._wait_for_playback()
            await self.emit(client_events.simple("interrupted"))

    async def _on_turn_complete(self) -> None:
        self.counters["turns"] += 1
        self._finish_utterances()  # before the turn's timing: its trace span takes the words
        self.clock.turn_complete()
        self._wait_for_playback()
        self.uplink.turn_complete()
        self._turn_heard = []
        self._answered_since_handle += self._turn_entries
        self._turn_entries = []
        if not self.agent.session_resumption:
            # No handles will come: a reconnect starts a fresh context (seeded) anyway, so
            # only the turn in flight is worth replaying.
            self.uplink.handle_saved()
            self._answered_since_handle = []
            self._drop_covered_replay()
        await self.emit(client_events.simple("turn_complete"))
        self._db(self._flush_job(self._snapshot()))

    async def _on_usage(self, usage: types.UsageMetadata) -> None:
        prompt = usage.prompt_token_count or 0
        response = usage.response_token_count or 0
        total = usage.total_token_count or (prompt + response)
        # Each report is the turn's running total (it may come more than once per turn):
        # add only what grew since the turn's previous report.
        seen = self._turn_usage
        self.counters["prompt_tokens"] += max(0, prompt - seen[0])
        self.counters["response_tokens"] += max(0, response - seen[1])
        self.counters["total_tokens"] += max(0, total - seen[2])
        self._turn_usage = (max(prompt, seen[0]), max(response, seen[1]), max(total, seen[2]))
        limit = self.agent.context_limit_tokens
        await self.emit(
            client_events.simple(
                "usage",
                prompt_tokens=prompt,
                response_tokens=response,
                total_tokens=total,
                context_limit=limit,
            )
        )
        if total >= WARN_AT * limit and not self._context_warned:
            self._context_warned = True
            log.warning("session %s context at %d of %d tokens", self.session_id, total, limit)
            await self.emit(
                client_events.warning(
                    "context_near_limit", f"The conversation uses {total} of {limit} tokens."
                )
            )

    async def _send_tool_responses(
        self, responses: list[types.FunctionResponse], connection: int
    ) -> None:
        if not responses or self._closing:
            return
        session = await self.upstream.wait_ready()
        if self.upstream.connections != connection:
            return  # a resumed upstream asks again; these ids mean nothing to it
        try:
            await session.send_tool_response(function_responses=responses)
        except Exception:  # the connection died under us: the next one asks again
            log.info("session %s: tool responses not sent, the upstream closed", self.session_id)
            return
        silent = types.FunctionResponseScheduling.SILENT
        self.upstream.tool_responses_sent(
            len(responses), reply_expected=any(r.scheduling != silent for r in responses)
        )

    def _first_output(self, *, audio: bool) -> bool:
        """Model output reached us; True for its turn's first (``reply_out`` follows)."""
        if not self.clock.in_turn:
            speech = self._speech
            # The service's VAD may end the turn before ours does: the speech we saw end
            # is the turn this reply answers.
            if speech is not None and speech.last_speech_at > self._vad_end_taken:
                self._vad_speech_ended(speech.last_speech_at)
        return self.clock.reply_in(audio=audio)

    def _vad_speech_ended(self, at: float) -> None:
        if at > self._vad_end_taken:
            self._vad_end_taken = at
            self._speech_ended("vad", at)

    # --- transcript -------------------------------------------------------------------------

    def _append_utterance(self, role: str, kind: str, text: str) -> None:
        key = (role, kind)
        utterance = self._utterances.get(key)
        if utterance is None:
            utterance = self._utterances[key] = _Utterance(role, kind, timezone.now())
        utterance.parts.append(text)

    def _cut_unheard_output(self) -> None:
        """A barge-in cut the reply: its transcript keeps the words the user heard (the
        transport's share of the reply's audio that played), at a word's end."""
        share = self.sink.output_heard_share()
        utterance = self._utterances.get(("model", "speech"))
        if share is None or utterance is None:
            return
        text = "".join(utterance.parts)
        utterance.parts = [heard_prefix(text, share)]

    def _finish_utterances(self) -> None:
        """The turn is over: the user's words first, then the model's, whatever order their
        pieces came in (a lagging input transcription can end after the reply began)."""
        for key in sorted(self._utterances, key=lambda k: k[0] != "user"):
            self._finish_utterance(*key)

    def _finish_utterance(self, role: str, kind: str) -> None:
        utterance = self._utterances.pop((role, kind), None)
        if utterance is not None:
            text = "".join(utterance.parts).strip()
            if text:
                self.progress.transcript.append((role, kind, text, utterance.at))
                self._turn_entries.append((role, text))
                self.telemetry.turn_words(role, text)

    # --- timers ---------------------------------------------------------------------------

    async def _duration_watch(self) -> None:
        limit = float(self.agent.max_session_seconds)
        elapsed = (timezone.now() - self.grant.session.started_at).total_seconds()
        if elapsed < WARN_AT * limit:
            await asyncio.sleep(WARN_AT * limit - elapsed)
            await self.emit(
                client_events.warning(
                    "session_near_limit", f"The session ends after {int(limit)} seconds."
                )
            )
            elapsed = WARN_AT * limit
        await asyncio.sleep(max(0.0, limit - elapsed))
        self._spawn(self.end(reason="max_duration", code=CloseCode.NORMAL), "end")

    # --- persistence (one worker, in order) -----------------------------------------------

    def _db(self, job: Callable[[], Any]) -> None:
        if not self._closing:
            self._db_jobs.put_nowait(job)

    async def _db_worker(self) -> None:
        while True:
            job = await self._db_jobs.get()
            if job is None:
                return
            try:
                # In order: a write that meets a database outage holds the ones behind it.
                still_owner = await db_write_retrying(job, what=f"session {self.session_id}")
            except Exception:  # persistence must never kill a live conversation
                log.exception("session %s: database job failed", self.session_id)
                continue
            if still_owner is False and not self._closing:
                # Superseded (its message lost) or ended elsewhere: stop talking to Gemini.
                self._spawn(self._lost_ownership(), "lost")

    async def _lost_ownership(self) -> None:
        session = await db_async(_session_state)(self.session_id)
        if session is not None and not session.is_live:
            await self.end(reason=session.end_reason or "ended")
        else:
            await self.superseded()

    def _set_status(self, status: VoiceSession.Status) -> Callable[[], bool]:
        def job() -> bool:
            return voice_session_set_status(
                session_id=self.session_id, channel_name=self.channel_name, status=status
            )

        return job

    def _save_handle(self) -> bool | None:
        handle, self._handle_to_save = self._handle_to_save, None
        if not handle:
            return None
        return voice_session_save_handle(
            session_id=self.session_id, channel_name=self.channel_name, handle=handle
        )

    def _drop_covered_replay(self) -> None:
        """The turn kept for replay is in the upstream's saved history now: forget it (after
        the handle's own save, the database worker keeping the order)."""
        turn = self._replay_saved_at
        if turn is not None and self.uplink.acked_turns > turn:
            self._replay_saved_at = None
            session_id = self.session_id
            self._db(lambda: voice_session_drop_replay(session_id=session_id, turn=turn))

    async def _keep_for_replay(self, turn: int) -> None:
        """Before the first tool call of a turn starts: keep the turn's words in the session,
        so a resume on another process can ask the model again (``ServiceToolGateway``
        answers the calls it then asks for from their stored outcomes). Once per turn, and
        before admission: a call must never run without its turn being replayable."""
        if self._replay_saved_at == turn or not self.tools.function_declarations():
            return
        text = self._turn_in_flight_text()
        if not text:
            return
        self._replay_saved_at = turn
        try:
            await db_async(voice_session_save_replay)(
                session_id=self.session_id, channel_name=self.channel_name, text=text, turn=turn
            )
        except Exception:  # the call still runs once; only a resume elsewhere cannot replay it
            log.exception("session %s: could not keep turn %s for replay", self.session_id, turn)

    def _turn_in_flight_text(self) -> str:
        """The words of the user's turn in progress, as text a model can be asked again."""
        # This turn's words only: an earlier turn that no handle covers yet has a position
        # of its own (a resume elsewhere loses it, as it loses any unsaved turn).
        texts = [item.payload[0] for item in self.uplink.current_turn()
                 if item.kind is ItemKind.TEXT]  # fmt: skip
        if self._turn_heard:  # an audio turn: what the server heard
            texts.append("".join(self._turn_heard))
        return "\n".join(t.strip() for t in texts if t.strip())

    async def _seed_context(self) -> None:
        """Give a fresh upstream session the conversation so far: the stored transcript of
        the completed turns (read after the database worker flushed what it holds), as
        context without asking for a reply. The turn in progress is asked again after it.
        A slow database costs the seed, never the call."""
        session = self.upstream.session
        if session is None:
            return
        try:
            async with asyncio.timeout(SEED_READ_TIMEOUT):
                entries: list[tuple[str, str]] = await self._db_call(
                    lambda: transcript_tail(
                        session_id=self.session_id, max_chars=self.config.seed_max_chars
                    )
                )
        except Exception:  # a context without history beats no conversation at all
            log.exception("session %s: could not read the transcript to seed", self.session_id)
            return
        await self._send_context(entries)

    async def _send_context(self, entries: list[tuple[str, str]]) -> None:
        """Conversation as context (``turnComplete: false``): the model replies to none of it."""
        session = self.upstream.session
        if session is None or not entries:
            return
        turns: list[types.Content | types.ContentDict] = []
        for role, text in entries:
            last = turns[-1] if turns else None
            if isinstance(last, types.Content) and last.role == role and last.parts:
                last.parts.append(types.Part(text=text))
            else:
                turns.append(types.Content(role=role, parts=[types.Part(text=text)]))
        await session.send_client_content(turns=turns, turn_complete=False)

    async def _db_call(self, job: Callable[[], Any]) -> Any:
        """Run ``job`` on the database worker after the jobs queued before it; its result."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def wrapped() -> None:
            try:
                result = job()
            except Exception as exc:
                done.get_loop().call_soon_threadsafe(_settle, done, None, exc)
            else:
                done.get_loop().call_soon_threadsafe(_settle, done, result, None)

        self._db_jobs.put_nowait(wrapped)
        return await done

    def _flush_job(self, snapshot: SessionProgress) -> Callable[[], None]:
        def job() -> None:
            voice_session_flush(session_id=self.session_id, progress=snapshot)

        return job


def heard_prefix(text: str, share: float) -> str:
    """The first ``share`` of ``text``, ending at a word's end (a word the cut fell inside
    counts as heard only when most of it was: half or more of its letters)."""
    if share >= 1:
        return text
    cut = round(len(text) * max(0.0, share))
    if cut <= 0:
        return ""
    if cut < len(text) and not text[cut].isspace() and not text[cut - 1].isspace():
        start = max(text.rfind(" ", 0, cut), text.rfind("\n", 0, cut)) + 1
        end = min((i for i in (text.find(" ", cut), text.find("\n", cut)) if i >= 0),
                  default=len(text))  # fmt: skip
        cut = end if cut - start >= (end - start) / 2 else start
    return text[:cut].rstrip()


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _session_state(session_id: Any) -> VoiceSession | None:
    return VoiceSession.objects.filter(pk=session_id).first()
