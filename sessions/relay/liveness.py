"""Is the upstream alive, and is it answering? Without false alarms on slow pongs.

Gemini answers WebSocket pings in 8-30 s (aicc2025/sip-to-ai#14), so a ping's round trip
says nothing within seconds. What does: whether the model answers when an answer is due.
A reply is **due** after the user's turn ends (a text turn, ``audio_end``/``activity_end``,
or the end of speech the bridge hears in the user's audio), while the model's turn is in
progress, and after a tool's answer went up. Silent that long while a reply is due means a
dead socket or a stalled model; both are recovered the same way (a new connection that
asks the turn again). With nothing due, only a long silence (no message, not even a late
pong) means the socket is dead. An empty ``turnComplete`` answering a due turn is a stall
(googleapis/python-genai#2117). One unanswered turn is asked again at most
``reply_retries`` times, then given up, so a noise our speech detector mistook for a turn
cannot loop.

Pure state and arithmetic: ``LiveUpstream`` feeds it events and asks for a verdict.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Liveness:
    def __init__(
        self,
        *,
        reply_timeout: float,
        idle_timeout: float,
        reply_retries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reply_timeout = reply_timeout
        self.idle_timeout = idle_timeout
        self.reply_retries = reply_retries
        self._clock = clock
        self.recoveries = 0  # of the turn awaiting a reply (kept across connections)
        self.reset()

    def reset(self) -> None:
        """A new connection: nothing is due on it until the bridge sends something."""
        now = self._clock()
        self.last_message = now
        self.last_heard = now  # a message or a pong
        self.last_output = 0.0
        self.reply_due = False
        self.due_since = now
        self.due_from_speech = False
        self.due_confirmed = True
        self.in_turn = False
        self.turn_started = 0.0
        self.output_since_due = False
        self.was_interrupted = False
        self.pending_tools = 0
        self.stall_detected = False  # an empty turnComplete, to be recovered
        self.stall_given_up = False  # an empty turnComplete past reply_retries

    @property
    def busy(self) -> bool:
        """A turn is under way: a planned reconnect waits for its handle."""
        return self.in_turn or self.reply_due or self.pending_tools > 0

    # --- what the upstream sends -------------------------------------------------------------

    def heard_message(self) -> None:
        self.last_message = self.last_heard = self._clock()

    def heard_pong(self) -> None:
        self.last_heard = self._clock()

    def model_output(self) -> bool:
        """The model is speaking; True when this starts its turn (a reply is due now)."""
        now = self._clock()
        started = not self.in_turn
        if started:
            self.turn_started = now
        self.in_turn = True
        self.output_since_due = True
        self.last_output = now
        return started

    def tool_calls(self, count: int) -> None:
        """The model waits for us now: no reply is due until the answers go up."""
        self.pending_tools += count
        self.reply_due = False
        self.output_since_due = True
        self.last_output = self._clock()

    def tool_calls_cancelled(self, count: int) -> None:
        self.pending_tools = max(0, self.pending_tools - count)

    def interrupted(self) -> None:
        self.was_interrupted = True
        self.in_turn = False

    def turn_complete(self) -> None:
        now = self._clock()
        empty = self.reply_due and not self.output_since_due and not self.was_interrupted
        if empty:
            if self.recoveries < self.reply_retries:
                self.recoveries += 1
                self.stall_detected = True
            else:
                self.stall_given_up = True
                self.recoveries = 0
            self.reply_due = False
        elif self.was_interrupted and self.reply_due and self.due_since > self.turn_started:
            # A text turn cut the reply short: its own reply is still to come.
            self.output_since_due = False
        else:
            self.reply_due = False
            if not self.was_interrupted:
                self.recoveries = 0  # answered: only now do the turn's recoveries end
        self.in_turn = False
        self.was_interrupted = False
        self.last_output = now

    # --- what the bridge sends ---------------------------------------------------------------

    def expect_reply(self, speech_ended_at: float | None = None, *, confirmed: bool = True) -> None:
        """A user turn went up (``speech_ended_at``: estimated from the audio, when the last
        speech left; ignored if the model answered since) or a tool answer did.
        ``confirmed`` False: the service has not shown it heard speech (no transcript yet)."""
        if speech_ended_at is not None and self.last_output >= speech_ended_at:
            return  # the server heard the end first and is answering already
        self.reply_due = True
        self.due_since = self._clock()
        self.due_from_speech = speech_ended_at is not None
        self.due_confirmed = confirmed
        self.output_since_due = False

    def speech_heard(self) -> None:
        self.due_confirmed = True

    def speech_resumed(self) -> None:
        """The user went on speaking: a pause, not the end of the turn."""
        if self.reply_due and self.due_from_speech and not self.output_since_due:
            self.reply_due = False

    def tool_responses_sent(self, count: int, *, reply_expected: bool = True) -> None:
        """Answers went up; a reply is due unless they were all SILENT ones."""
        self.pending_tools = max(0, self.pending_tools - count)
        if self.pending_tools == 0 and reply_expected:
            self.expect_reply()

    # --- verdicts ------------------------------------------------------------------------------

    def verdict(self, now: float, *, pinging: bool) -> str | None:
        """None while all is well; else ``stall`` (the socket answers, the model does not),
        ``upstream_unresponsive_due`` (nothing at all while a reply is due) or
        ``upstream_unresponsive`` (nothing at all for ``idle_timeout``; only when pinging,
        since without pings an idle healthy socket is silent too)."""
        if (self.reply_due or self.in_turn) and not self.pending_tools:
            since = self.last_message
            if self.reply_due:
                since = max(since, self.due_since)
            if now - since > self.reply_timeout:
                return "stall" if self.last_heard > since else "upstream_unresponsive_due"
        if pinging and now - self.last_heard > self.idle_timeout:
            return "upstream_unresponsive"
        return None

    def next_check(self, now: float, *, pinging: bool) -> float:
        """The earliest moment ``verdict`` could change if nothing more happens (new
        messages only move it later; a new due reply is announced by the caller)."""
        deadline = now + self.idle_timeout
        if pinging:
            deadline = self.last_heard + self.idle_timeout
        if (self.reply_due or self.in_turn) and not self.pending_tools:
            since = self.last_message
            if self.reply_due:
                since = max(since, self.due_since)
            deadline = min(deadline, since + self.reply_timeout)
        return deadline + 0.001  # past the strict ">" of the verdict

    def take_recovery(self) -> bool:
        """Spend one recovery of the awaited turn; False (and the turn is no longer awaited)
        once ``reply_retries`` were spent on it."""
        # A turn only our speech estimate vouches for (a noise, perhaps) gets one try.
        limit = self.reply_retries if self.due_confirmed else min(1, self.reply_retries)
        if self.recoveries < limit:
            self.recoveries += 1
            return True
        self.recoveries = 0
        self.reply_due = False
        self.in_turn = False
        return False
