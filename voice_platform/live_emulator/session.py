"""One Live session after `setupComplete`: reads client messages, runs the scripted model's
turns one at a time, and owns the connection timers and mid-session faults."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from voice_platform.live_emulator import audio, echo, model, protocol
from voice_platform.live_emulator.config import EmulatorConfig
from voice_platform.live_emulator.faults import Faults
from voice_platform.live_emulator.model import PlannedCall, Turn
from voice_platform.live_emulator.recorder import PaceStats, SessionRecord
from voice_platform.live_emulator.resumption import HandleStore, SessionState
from voice_platform.live_emulator.vad import EnergyVad, VadEvent

TurnJob = Callable[[], Awaitable[None]]
logger = logging.getLogger(__name__)
_call_ids = itertools.count(1)
_TEXT_PART_INTERVAL = 0.05  # seconds between streamed text parts at pace 1
# Name of the tasks that run a delayed `drop_after_tool_call` / `_response`.
DROP_TIMER_TASK = "live-emulator-drop-timer"


@dataclass
class _Usage:
    """Token counts of the turn in progress, reported on its `turnComplete`."""

    prompt_text: int = 0
    prompt_audio: int = 0
    response: int = 0


class LiveSession:
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

        generation = setup.get("generationConfig") or {}
        modalities = generation.get("responseModalities") or ["AUDIO"]
        self.modality = "TEXT" if str(modalities[0]).upper() == "TEXT" else "AUDIO"
        self.functions = model.declared_functions(setup)
        self.input_transcription = "inputAudioTranscription" in setup
        self.output_transcription = "outputAudioTranscription" in setup
        self.resumable = "sessionResumption" in setup

        realtime = setup.get("realtimeInputConfig") or {}
        detection = realtime.get("automaticActivityDetection") or {}
        self.auto_vad = not detection.get("disabled", False)
        self.interrupts = realtime.get("activityHandling") != "NO_INTERRUPTION"
        self.vad = EnergyVad.from_setup(
            detection,
            threshold=config.vad_threshold,
            start_ms=config.vad_start_ms,
            silence_ms=config.vad_silence_ms,
        )
        self.compression = self._compression_window(setup.get("contextWindowCompression"))

        self.jobs: asyncio.Queue[TurnJob] = asyncio.Queue()
        self.current: asyncio.Task[None] | None = None
        self.usage = _Usage()
        self.turn_audio: list[bytes] = []
        self.manual_activity = False
        # Blocking calls of the turn in progress, and their answers.
        self.waiting: dict[str, PlannedCall] = {}
        self.answers: dict[str, Any] = {}
        self.answered = asyncio.Event()
        # NON_BLOCKING calls still running on the client: id -> name.
        self.background: dict[str, str] = {}
        self.received = 0
        self.dark = False
        # Fault injection: the connection was aborted (nothing more is sent), the pending
        # `drop_after_tool_*` timers, and which of those faults were armed already.
        self.dropped = False
        self.drop_timers: set[asyncio.Task[None]] = set()
        self.armed: set[str] = set()
        self.ended = False
        self.echo_frames = config.echo_frames
        # Receipt time of the message being handled (only kept in echo mode).
        self.received_ns = 0

    # --- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(self._turn_worker()),
            asyncio.create_task(_quietly(self._lifetime_timer())),
        ]
        if self.compression is None:
            tasks.append(asyncio.create_task(_quietly(self._session_limit_timer())))
        try:
            if not await self._fault_due(0):
                await self._read_loop()
        except ConnectionClosed:
            pass
        finally:
            self.ended = True
            self._cancel_drop_timers()
            for task in [*tasks, self.current]:
                if task is not None:
                    task.cancel()
            self.handles.session_ended(self.state.session_id, self.config.clock())

    async def _read_loop(self) -> None:
        async for raw in self.ws:
            if self.echo_frames:
                self.received_ns = time.monotonic_ns()
            self.received += 1
            try:
                message = protocol.parse_client_message(raw)
            except protocol.ProtocolError:
                await self.close(protocol.CLOSE_INVALID_ARGUMENT, protocol.REASON_INVALID_ARGUMENT)
                return
            self.record.add_message(message)
            if await self._fault_due(self.received):
                return
            if "toolResponse" in message and self._tool_fault(
                "toolResponse", self.faults.drop_after_tool_response
            ):
                return  # dropped before acting on it
            try:
                known = await self._dispatch(message)
            except protocol.ProtocolError:
                known = False
            if not known:
                await self.close(protocol.CLOSE_INVALID_ARGUMENT, protocol.REASON_INVALID_ARGUMENT)
                return

    async def close(self, code: int, reason: str) -> None:
        self._cancel_drop_timers()
        self.record.close(code, reason)
        await self.ws.close(code, protocol.truncate_reason(reason))

    async def send(self, message: dict[str, Any]) -> None:
        if self.dark:
            # A black hole never answers again; park the caller until it is cancelled.
            await asyncio.Event().wait()
        if self.dropped:
            # Nothing goes out after a drop: fail as a send on the closed connection does
            # (websockets raises ConnectionClosed once the abort is processed).
            await self.ws.wait_closed()
        else:
            self.record.add_sent(message)
        await self.ws.send(protocol.encode(message), text=False)

    # --- faults and timers ---------------------------------------------------------------

    async def _fault_due(self, count: int) -> bool:
        """Apply a fault triggered by the `count`th client message; True ends the session."""
        faults = self.faults
        if faults.close_after == count:
            await self.close(faults.close_code, faults.close_reason)
            return True
        if faults.drop_after == count:
            self._drop("dropped by fault injection")
            return True
        if faults.black_hole_after == count:
            await self._go_dark()
            return True
        return False

    async def _go_dark(self) -> None:
        """Stop reading (so pings go unanswered too) and writing, but keep the socket open."""
        self.dark = True
        self._cancel_drop_timers()
        self.record.close(None, "black hole")
        if self.current is not None:
            self.current.cancel()
        keepalive = getattr(self.ws, "keepalive_task", None)
        if isinstance(keepalive, asyncio.Task):
            keepalive.cancel()
        self.ws.transport.pause_reading()
        await self.ws.wait_closed()

    def _drop(self, reason: str) -> None:
        """Abort the TCP connection without a close frame (the client sees 1006)."""
        if self.dropped or self.dark or self.ended or self.ws.state is not State.OPEN:
            return  # already ended, or ending, for another reason
        self.dropped = True
        self.record.close(1006, reason)
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
            timer = asyncio.create_task(self._drop_later(delay, reason), name=DROP_TIMER_TASK)
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

    async def _lifetime_timer(self) -> None:
        lifetime = self.faults.lifetime or self.config.connection_lifetime
        notice = self.faults.go_away_notice
        if notice is None:
            notice = self.config.go_away_notice
        notice = max(0.0, min(notice, lifetime))
        await asyncio.sleep(lifetime - notice)
        await self.send(protocol.go_away(notice))
        await asyncio.sleep(notice)
        await self.close(self.config.lifetime_close_code, self.config.lifetime_close_reason)

    async def _session_limit_timer(self) -> None:
        """Without compression a session (across resumptions) ends at the duration limit."""
        while True:
            limit = (
                self.config.session_limit_video
                if self.record.video_frames
                else self.config.session_limit_audio
            )
            remaining = self.state.started_at + limit - self.config.clock()
            if remaining <= 0:
                await self.close(protocol.CLOSE_INTERNAL, protocol.REASON_SESSION_LIMIT)
                return
            await asyncio.sleep(min(remaining, 5.0))

    # --- client messages -----------------------------------------------------------------

    async def _dispatch(self, message: dict[str, Any]) -> bool:
        if "clientContent" in message:
            await self._on_client_content(message["clientContent"] or {})
        elif "realtimeInput" in message:
            await self._on_realtime_input(message["realtimeInput"] or {})
        elif "toolResponse" in message:
            await self._on_tool_response(message["toolResponse"] or {})
        elif "contextUpdate" in message:
            update = message["contextUpdate"] or {}
            if "systemInstruction" in update:
                self.setup["systemInstruction"] = update["systemInstruction"]
        else:
            return False
        return True

    async def _on_client_content(self, content: dict[str, Any]) -> None:
        turns = [t for t in content.get("turns") or [] if isinstance(t, dict)]
        user_texts = model.content_texts(turns, "user")
        self.record.texts.extend(user_texts)
        if not content.get("turnComplete", False):
            # Context only (e.g. seeded history): remember it, do not answer.
            for turn in turns:
                role = turn.get("role") or "user"
                for text in model.content_texts([turn], role):
                    self.state.history.append(Turn(role, text, model.text_tokens(text)))
            return
        for text in model.content_texts(turns, "model"):
            self.state.history.append(Turn("model", text, model.text_tokens(text)))
        prompt = "\n".join(user_texts)
        if not user_texts:
            # An empty turnComplete answers the user turns sent earlier as context.
            trailing: list[str] = []
            while self.state.history and self.state.history[-1].role == "user":
                trailing.insert(0, self.state.history.pop().text)
            prompt = "\n".join(trailing)
        await self._user_turn(lambda: self._text_turn(prompt))

    async def _on_realtime_input(self, realtime: dict[str, Any]) -> None:
        blobs = [realtime[k] for k in ("audio", "video") if isinstance(realtime.get(k), dict)]
        blobs += [b for b in realtime.get("mediaChunks") or [] if isinstance(b, dict)]
        for blob in blobs:
            mime = str(blob.get("mimeType", ""))
            data = protocol.b64decode(str(blob.get("data", "")))
            if mime.startswith("audio/") and self.echo_frames:
                self.record.audio_bytes += len(data)
                await self.send(protocol.model_audio(echo.stamp(data, self.received_ns)))
            elif mime.startswith("audio/"):
                await self._on_audio(data)
            else:
                self.record.video_frames += 1
        if isinstance(realtime.get("text"), str):
            text = realtime["text"]
            self.record.texts.append(text)
            await self._user_turn(lambda: self._text_turn(text))
        if "activityStart" in realtime and not self.auto_vad:
            self.manual_activity = True
            self.turn_audio = []
            if self.interrupts:
                await self._barge_in()
        if "activityEnd" in realtime and self.manual_activity:
            self.manual_activity = False
            self._end_audio_turn(trim=False)
        if realtime.get("audioStreamEnd") and self.auto_vad and self.vad.speaking:
            self.vad.reset()
            self._end_audio_turn(trim=False)

    async def _on_audio(self, pcm: bytes) -> None:
        self.record.audio_bytes += len(pcm)
        if not self.auto_vad:
            if self.manual_activity:
                self.turn_audio.append(pcm)
            return
        events = self.vad.feed(pcm)
        if self.vad.speaking or events:
            self.turn_audio.append(pcm)
        for event in events:
            if event is VadEvent.SPEECH_START:
                if self.interrupts:
                    await self._barge_in()
            else:
                self._end_audio_turn(trim=True)

    def _end_audio_turn(self, *, trim: bool) -> None:
        pcm = b"".join(self.turn_audio)
        self.turn_audio = []
        if trim:
            pcm = audio.trim_end(pcm, self.vad.silence_ms / 1000)
        if pcm:
            self.jobs.put_nowait(lambda: self._audio_turn(pcm))

    async def _on_tool_response(self, response: dict[str, Any]) -> None:
        for answer in response.get("functionResponses") or []:
            if not isinstance(answer, dict):
                continue
            self.record.tool_responses.append(answer)
            call_id = answer.get("id")
            result = answer.get("response", {})
            if call_id in self.waiting:
                self.answers[call_id] = result
            elif call_id in self.background:
                await self._on_background_result(call_id, answer, result)
            # Anything else answers a cancelled or unknown call: ignored, like the service.
        if self.waiting and self.waiting.keys() <= self.answers.keys():
            self.answered.set()

    async def _on_background_result(
        self, call_id: str, answer: dict[str, Any], result: Any
    ) -> None:
        name = self.background[call_id]
        if not answer.get("willContinue", False):
            del self.background[call_id]
        line = model.tool_result_line(name, result)
        self.state.history.append(Turn("tool", line, model.text_tokens(line)))
        scheduling = answer.get("scheduling") or "WHEN_IDLE"
        if scheduling == "SILENT":
            return
        if scheduling == "INTERRUPT" and not self.waiting:
            await self._barge_in()
        # WHEN_IDLE: the job queue runs it once the turn in progress is over.
        self.jobs.put_nowait(lambda: self._announce(line))

    # --- turns ---------------------------------------------------------------------------

    def _busy(self) -> bool:
        return self.current is not None and not self.current.done()

    async def _user_turn(self, job: TurnJob) -> None:
        if self.interrupts:
            await self._barge_in()
        self.jobs.put_nowait(job)

    async def _turn_worker(self) -> None:
        while True:
            job = await self.jobs.get()
            self.usage = _Usage()
            self.current = asyncio.create_task(_quietly(job()))
            # wait() rather than await: a barge-in cancels the turn, not this worker.
            await asyncio.wait({self.current})

    async def _barge_in(self) -> None:
        """User activity during a reply or a pending tool call stops the turn."""
        if not self._busy() or self.current is None:
            return
        self.current.cancel()
        await asyncio.wait({self.current})
        if self.waiting:
            ids = list(self.waiting)
            self.waiting, self.answers = {}, {}
            await self.send(protocol.tool_call_cancellation(ids))
        await self.send(protocol.interrupted())
        await self._complete_turn()

    async def _reply_delay(self) -> None:
        if self.faults.reply_delay > 0:
            await asyncio.sleep(self.faults.reply_delay)

    def _start_usage(self) -> None:
        """The prompt is everything in context: instructions, tools and history."""
        tools = self.setup.get("tools")
        fixed = model.text_tokens(model.system_text(self.setup))
        fixed += model.text_tokens(protocol.compact_json(tools)) if tools else 0
        self.usage.prompt_text = fixed + sum(
            t.tokens for t in self.state.history if t.modality == "TEXT"
        )
        self.usage.prompt_audio = sum(t.tokens for t in self.state.history if t.modality == "AUDIO")

    async def _text_turn(self, text: str) -> None:
        await self._reply_delay()
        self.state.history.append(Turn("user", text, model.text_tokens(text)))
        self._start_usage()
        calls = model.plan_tool_calls(text, self.functions)
        if calls:
            await self._tool_turn(calls)
        else:
            await self._speak(model.reply_to_text(text, self.state.history))
        await self._finish_turn()

    async def _audio_turn(self, pcm: bytes) -> None:
        await self._reply_delay()
        heard = audio.describe(pcm)
        seconds = audio.pcm_seconds(len(pcm), audio.INPUT_RATE)
        if self.input_transcription:
            self.record.input_transcripts.append(heard)
            await self.send(protocol.input_transcription(heard))
        tokens = model.audio_tokens(seconds, self.config.audio_tokens_per_second)
        self.state.history.append(Turn("user", heard, tokens, "AUDIO"))
        self._start_usage()
        reply = model.reply_to_text(heard, self.state.history)
        # The spoken reply is an echo of what was heard.
        await self._speak(reply, audio.resample(pcm) if self.modality == "AUDIO" else None)
        await self._finish_turn()

    async def _announce(self, line: str) -> None:
        """A model-initiated turn reporting a NON_BLOCKING function's result."""
        self._start_usage()
        await self._speak(line)
        await self._finish_turn()

    async def _tool_turn(self, calls: list[PlannedCall]) -> None:
        ids = [f"function-call-{next(_call_ids)}-{secrets.token_hex(4)}" for _ in calls]
        wire = [{"id": i, "name": c.name, "args": c.args} for i, c in zip(ids, calls, strict=True)]
        self.record.tool_calls.extend(wire)
        self.waiting = {i: c for i, c in zip(ids, calls, strict=True) if not c.non_blocking}
        self.answers = {}
        self.answered = asyncio.Event()
        self.background.update(
            {i: c.name for i, c in zip(ids, calls, strict=True) if c.non_blocking}
        )
        await self.send(protocol.tool_call(wire))
        # With drop_after_tool_call=0 the connection is gone now: the next send fails and
        # ends this turn (no resumption update, no reply).
        self._tool_fault("toolCall", self.faults.drop_after_tool_call)
        if self.resumable:
            await self.send(protocol.resumption_update(None))
        if self.waiting:
            await self.answered.wait()
        lines = []
        for call_id, call in zip(ids, calls, strict=True):
            if call.non_blocking:
                lines.append(model.tool_started_line(call.name))
            else:
                line = model.tool_result_line(call.name, self.answers[call_id])
                self.state.history.append(Turn("tool", line, model.text_tokens(line)))
                lines.append(line)
        self.waiting, self.answers = {}, {}
        await self._speak("\n".join(lines))

    async def _speak(self, text: str, pcm: bytes | None = None) -> None:
        """Stream a reply at the configured pace, then add it to the history."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        if self.modality == "TEXT":
            for index, part in enumerate(model.split_text(text, self.config.text_parts)):
                await self._pace_until(start, index * _TEXT_PART_INTERVAL)
                await self.send(protocol.model_text(part))
                self.usage.response += model.text_tokens(part)
            self.state.history.append(Turn("model", text, model.text_tokens(text)))
            return
        if pcm is None:
            pcm = audio.synthesize(text, self.config.speech_ms_per_char)
        chunk = audio.OUTPUT_RATE * 2 * self.config.chunk_ms // 1000
        count = max(1, -(-len(pcm) // chunk))
        captions: dict[int, str] = {}
        if self.output_transcription:
            parts = model.split_text(text, self.config.text_parts)
            for index, part in enumerate(parts):
                captions[index * count // len(parts)] = part
        for index in range(count):
            await self._pace_until(start, index * self.config.chunk_ms / 1000)
            piece = pcm[index * chunk : (index + 1) * chunk]
            await self.send(protocol.model_audio(piece))
            self.usage.response = model.audio_tokens(
                audio.pcm_seconds((index + 1) * chunk, audio.OUTPUT_RATE),
                self.config.audio_tokens_per_second,
            )
            if index in captions:
                await self.send(protocol.output_transcription(captions[index]))
        self.state.history.append(Turn("model", text, self.usage.response, "AUDIO"))

    async def _pace_until(self, start: float, offset: float) -> None:
        if self.pace <= 0:
            await asyncio.sleep(0)  # still let the reader see a barge-in
            return
        delay = start + offset / self.pace - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)
            delay = start + offset / self.pace - asyncio.get_running_loop().time()
        if self.pace_stats is not None:
            self.pace_stats.observe(-delay)

    async def _finish_turn(self) -> None:
        await self.send(protocol.generation_complete())
        await self._complete_turn()

    async def _complete_turn(self) -> None:
        usage = self.usage
        await self.send(
            protocol.turn_complete(
                model.usage_metadata(
                    prompt_text=usage.prompt_text,
                    prompt_audio=usage.prompt_audio,
                    response=usage.response,
                    response_modality=self.modality,
                )
            )
        )
        self._compress()
        if self.resumable:
            handle = None
            if not self.waiting and not self.background:
                handle = self.handles.issue(self.state, self.config.clock())
                self.record.handles.append(handle)
            await self.send(protocol.resumption_update(handle))

    def _compress(self) -> None:
        if self.compression is None:
            return
        trigger, target = self.compression
        fixed = model.text_tokens(model.system_text(self.setup))
        dropped = model.compress(self.state.history, fixed, trigger, target)
        if dropped:
            self.record.compressions += 1

    def _compression_window(self, setting: object) -> tuple[int, int] | None:
        if not isinstance(setting, dict):
            return None
        trigger = setting.get("triggerTokens")
        if not isinstance(trigger, int) or trigger <= 0:
            trigger = int(self.config.context_window_tokens * 0.8)
        window = setting.get("slidingWindow") or {}
        target = window.get("targetTokens") if isinstance(window, dict) else None
        if not isinstance(target, int) or target < 0:
            target = trigger // 2
        return trigger, target


def new_session_id() -> str:
    return secrets.token_hex(8)


async def _quietly(work: Awaitable[None]) -> None:
    """Background work of a session ends silently when the client has gone."""
    try:
        await work
    except ConnectionClosed:
        pass
    except Exception:
        logger.exception("live emulator session task failed")
