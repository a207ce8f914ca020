"""The scripted model's turns over the wire: one at a time, interruptible, paced, with
tool calls, usage reports, stalls and resumption handles."""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets
from typing import Any

from voice_platform.live_emulator import audio, model, protocol
from voice_platform.live_emulator.model import PlannedCall, Turn
from voice_platform.live_emulator.session_base import (
    SessionBase,
    TurnAborted,
    TurnJob,
    Usage,
    quietly,
)
from voice_platform.live_emulator.stalls import Stall

_call_ids = itertools.count(1)
_TEXT_PART_INTERVAL = 0.05  # seconds between streamed text parts at pace 1


class TurnEngine(SessionBase):
    def _busy(self) -> bool:
        return self.current is not None and not self.current.done()

    async def _user_turn(self, job: TurnJob) -> None:
        if self.interrupts:
            await self._barge_in()
        self.jobs.put_nowait(job)

    async def _turn_worker(self) -> None:
        while True:
            job = await self.jobs.get()
            self.usage = Usage()
            self.current = asyncio.create_task(quietly(job()))
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

    async def _stalled(self) -> bool:
        """A stall (stalls.py) answers this user turn instead of the model; True if so."""
        stall = self.stalls.next_turn()
        if stall is Stall.EMPTY:
            self.record.empty_turns_sent += 1
            await self._complete_turn()
        elif stall is Stall.SILENT:
            self.record.silent_turns += 1
        return stall is not None

    async def _text_turn(self, text: str) -> None:
        await self._reply_delay()
        self.state.history.append(Turn("user", text, model.text_tokens(text)))
        self._start_usage()
        if await self._stalled():
            return
        calls = model.plan_tool_calls(text, self.functions)
        if calls:
            await self._tool_turn(calls)
        else:
            await self._speak(model.reply_to_text(text, self.state.history))
        await self._finish_turn()

    async def _audio_turn(self, pcm: bytes, heard: str | None = None) -> None:
        """`heard` is the streamed transcript (transcripts.py), else one is made here."""
        await self._reply_delay()
        streamed = heard is not None
        heard = heard if heard is not None else audio.describe(pcm)
        seconds = audio.pcm_seconds(len(pcm), audio.INPUT_RATE)
        if self.input_transcription:
            self.record.input_transcripts.append(heard)
            if not streamed:
                await self.send(protocol.input_transcription(heard))
        tokens = model.audio_tokens(seconds, self.config.audio_tokens_per_second)
        self.state.history.append(Turn("user", heard, tokens, "AUDIO"))
        self._start_usage()
        if await self._stalled():
            return
        calls = self._audio_calls(pcm)
        if calls:
            await self._tool_turn(calls)
        else:
            reply = model.reply_to_text(heard, self.state.history)
            # The spoken reply is an echo of what was heard.
            await self._speak(reply, audio.resample(pcm) if self.modality == "AUDIO" else None)
        await self._finish_turn()

    def _audio_calls(self, pcm: bytes) -> list[PlannedCall] | None:
        """`audio_tool_calls`: a spoken turn at a mapped pitch calls those functions."""
        pitch = audio.pitch_hz(pcm)
        lines = self.config.audio_tool_calls.get(pitch) if pitch is not None else None
        return model.plan_tool_calls(lines, self.functions) if lines else None

    async def _announce(self, line: str) -> None:
        """A model-initiated turn reporting a NON_BLOCKING function's result."""
        self._start_usage()
        await self._speak(line)
        await self._finish_turn()

    async def _tool_turn(self, calls: list[PlannedCall]) -> None:
        if self.config.tool_preamble:
            # Part of the model's turn: a barge-in now interrupts it like any reply.
            await self._speak(model.TOOL_PREAMBLE)
        if self._refuses_tool_call():
            await self.close(protocol.CLOSE_POLICY, protocol.REASON_NOT_IMPLEMENTED)
            raise TurnAborted
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

    def _refuses_tool_call(self) -> bool:
        """livekit/agents#4545: native-audio models with tools close 1008, intermittently,
        when a function call is due."""
        rate = self.config.not_implemented_rate
        return rate > 0 and "native-audio" in self.state.model and self.rng.random() < rate

    async def _speak(self, text: str, pcm: bytes | None = None) -> None:
        """Stream a reply at the configured pace, then add it to the history."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        base = self.usage.response  # a turn may speak twice (tool preamble, then result)
        if self.modality == "TEXT":
            parts = model.split_text(text, self.config.text_parts)
            updates = self._usage_points(len(parts))
            for index, part in enumerate(parts):
                await self._pace_until(start, index * _TEXT_PART_INTERVAL)
                await self.send(protocol.model_text(part))
                self.usage.response += model.text_tokens(part)
                if index in updates:
                    await self._send_usage()
            self.state.history.append(Turn("model", text, model.text_tokens(text)))
            return
        if pcm is None:
            pcm = audio.synthesize(text, self.config.speech_ms_per_char)
        chunk = audio.OUTPUT_RATE * 2 * self.config.chunk_ms // 1000
        count = max(1, -(-len(pcm) // chunk))
        updates = self._usage_points(count)
        captions: dict[int, str] = {}
        if self.output_transcription:
            parts = model.split_text(text, self.config.text_parts)
            for index, part in enumerate(parts):
                captions[index * count // len(parts)] = part
        for index in range(count):
            await self._pace_until(start, index * self.config.chunk_ms / 1000)
            piece = pcm[index * chunk : (index + 1) * chunk]
            await self.send(protocol.model_audio(piece))
            self.usage.response = base + model.audio_tokens(
                audio.pcm_seconds((index + 1) * chunk, audio.OUTPUT_RATE),
                self.config.audio_tokens_per_second,
            )
            if index in captions:
                await self.send(protocol.output_transcription(captions[index]))
            if index in updates:
                await self._send_usage()
        self.state.history.append(Turn("model", text, self.usage.response - base, "AUDIO"))

    def _usage_points(self, count: int) -> set[int]:
        """After which of `count` reply pieces a running usage report goes out."""
        per_turn = self.config.usage_updates_per_turn
        if per_turn <= 1 or count <= 0:
            return set()
        return {
            min(count - 1, max(0, math.ceil(count * k / per_turn) - 1)) for k in range(1, per_turn)
        }

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

    def _usage_now(self) -> dict[str, Any]:
        return model.usage_metadata(
            prompt_text=self.usage.prompt_text,
            prompt_audio=self.usage.prompt_audio,
            response=self.usage.response,
            response_modality=self.modality,
        )

    async def _send_usage(self) -> None:
        """A running report: this turn's counts so far (not a delta, not a session total)."""
        self.record.usage_updates += 1
        await self.send(protocol.usage_update(self._usage_now()))

    async def _finish_turn(self) -> None:
        await self.send(protocol.generation_complete())
        await self._complete_turn()

    async def _complete_turn(self) -> None:
        # A lagging input transcript may run into the reply, never past the turn's end:
        # the pieces still waiting go out before the turnComplete.
        await self.pieces.drain()
        await self.send(protocol.turn_complete(self._usage_now()))
        self._compress()
        self.turns_completed += 1
        if self.faults.drop_before_handle == self.turns_completed:
            # The turn was answered, but its handle never leaves: a resume goes back to the
            # handle before it.
            self._drop("dropped by fault injection before the turn's handle")
            return
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
