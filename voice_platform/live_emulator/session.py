"""One Live session after `setupComplete`: reads client messages and turns them into
work for the turn engine (turns.py) and the connection's lifecycle (lifecycle.py)."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from websockets.exceptions import ConnectionClosed

from voice_platform.live_emulator import audio, echo, model, protocol
from voice_platform.live_emulator.lifecycle import ConnectionLifecycle
from voice_platform.live_emulator.model import Turn
from voice_platform.live_emulator.session_base import DROP_TIMER_TASK
from voice_platform.live_emulator.transcripts import TranscriptStream
from voice_platform.live_emulator.turns import TurnEngine
from voice_platform.live_emulator.vad import EnergyVad, RealtimeGate, VadEvent

__all__ = ["DROP_TIMER_TASK", "LiveSession", "new_session_id"]


class LiveSession(TurnEngine, ConnectionLifecycle):
    """Construct with `SessionBase`'s arguments, then `await run()`."""

    def _init_input(self) -> None:
        realtime = self.setup.get("realtimeInputConfig") or {}
        detection = realtime.get("automaticActivityDetection") or {}
        self.auto_vad = not detection.get("disabled", False)
        self.vad = EnergyVad.from_setup(
            detection,
            threshold=self.config.vad_threshold,
            start_ms=self.config.vad_start_ms,
            silence_ms=self.config.vad_silence_ms,
        )
        self.turn_audio: list[bytes] = []
        self.manual_activity = False
        # Audio arriving too far ahead of real time is not heard (realtime_audio_buffer).
        self.gate = RealtimeGate(self.config.realtime_audio_buffer)
        self.transcript: TranscriptStream | None = None
        if self.config.input_transcript_streaming:
            silence = self.vad.silence_ms / 1000 if self.auto_vad else 0.0
            self.transcript = TranscriptStream(silence=silence, emit=self._schedule_piece)
        self.received = 0
        self.echo_frames = self.config.echo_frames
        # Receipt time of the message being handled (only kept in echo mode).
        self.received_ns = 0

    # --- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._turn_worker()), *self._start_timers()]
        try:
            if not await self._fault_due(0):
                await self._read_loop()
        except ConnectionClosed:
            pass
        finally:
            self.ended = True
            self._cancel_drop_timers()
            self.pieces.cancel()
            for task in [*tasks, self.current]:
                if task is not None:
                    task.cancel()
            self.handles.session_ended(self.state.session_id, self.config.clock())

    async def _read_loop(self) -> None:
        async for raw in self.ws:
            if self.dark:
                # Gone dark on a timer (black_hole_at): what was already buffered is lost.
                await self.ws.wait_closed()
                return
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
            self._reset_turn_audio()
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
        self.record.audio_sum_squares += audio.sum_squares(pcm)
        seconds = audio.pcm_seconds(len(pcm), audio.INPUT_RATE)
        if not self.gate.admit(seconds, asyncio.get_running_loop().time()):
            self.record.audio_discarded_seconds += seconds
            return
        if not self.auto_vad:
            if self.manual_activity:
                self._add_turn_audio(pcm)
            return
        events = self.vad.feed(pcm)
        if self.vad.speaking or events:
            self._add_turn_audio(pcm)
        for event in events:
            if event is VadEvent.SPEECH_START:
                if self.interrupts:
                    await self._barge_in()
            else:
                self._end_audio_turn(trim=True)

    def _add_turn_audio(self, pcm: bytes) -> None:
        self.turn_audio.append(pcm)
        if self.transcript is not None:
            self.transcript.feed(pcm)

    def _reset_turn_audio(self) -> None:
        self.turn_audio = []
        if self.transcript is not None:
            self.transcript.reset()

    def _end_audio_turn(self, *, trim: bool) -> None:
        pcm = b"".join(self.turn_audio)
        self.turn_audio = []
        if trim:
            pcm = audio.trim_end(pcm, self.vad.silence_ms / 1000)
        heard = self.transcript.finish(pcm) if self.transcript is not None else None
        if pcm:
            self.jobs.put_nowait(lambda: self._audio_turn(pcm, heard))

    def _schedule_piece(self, piece: str) -> None:
        """A streamed input transcript piece leaves `input_transcript_lag` from now."""
        if not self.input_transcription:
            return
        self.record.add_transcript_piece(piece)
        message = protocol.input_transcription(piece)
        self.pieces.schedule(self.config.input_transcript_lag, lambda: self.send(message))

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


def new_session_id() -> str:
    return secrets.token_hex(8)
