"""One simulated caller: a Locust user that mints a client token over REST, opens the live
WebSocket and talks in turns, call after call, until the run's deadline.

Imported only after Locust has monkey-patched the process for gevent: the WebSocket client
(websocket-client) and requests then block greenlets, not the process. Each call runs three
greenlets: this user's (the conversation), a sender (the microphone: one frame every
`frame_ms` on a fixed schedule, speech when a turn is spoken, silence otherwise, as a phone
call streams) and a receiver (events and model audio).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import struct
import time
from collections import deque
from typing import Any, ClassVar

import gevent  # type: ignore[import-untyped]  # ships without type hints
import requests
import websocket
from gevent.event import Event  # type: ignore[import-untyped]  # ships without type hints
from locust import User, task
from locust.exception import StopUser

from loadtest import audio
from loadtest.config import LoadConfig
from loadtest.net import http_session, is_redirect
from loadtest.stats import RunStats

_caller_ids = itertools.count(1)
_FATAL_HTTP = {400, 401, 403, 404}  # our configuration is wrong: retrying cannot help
_FATAL_CLOSE = {4001, 4003}  # a refused credential or agent: same
HANDSHAKE_TIMEOUT = 10.0
START_TIMEOUT = 30.0
HANG_UP_TIMEOUT = 10.0  # the close waits behind whatever the server has not read yet


class Fatal(Exception):
    """The caller cannot go on (bad API key, unknown agent, refused token)."""


class Retry(Exception):
    """This call failed; the caller may try a new one after `delay` seconds."""

    def __init__(self, delay: float = 1.0) -> None:
        super().__init__(delay)
        self.delay = delay


class Caller(User):
    """The runner makes a subclass with `config`, `stats` and `deadline` set."""

    abstract = True
    config: ClassVar[LoadConfig]
    stats: ClassVar[RunStats]
    deadline: ClassVar[float]  # time.monotonic() at which callers hang up

    def wait_time(self) -> float:
        return 0.0

    def on_start(self) -> None:
        self.label: str = getattr(self, "label", "") or str(next(_caller_ids))
        self.calls = 0
        self.rng = random.Random(f"{self.config.seed}-{self.label}")  # noqa: S311  (jitter)
        self.http = http_session()
        self.stats.callers_spawned += 1
        self.stats.callers_active += 1

    def on_stop(self) -> None:
        self.stats.callers_active -= 1
        self.http.close()

    @task
    def call(self) -> None:
        if time.monotonic() >= self.deadline:
            raise StopUser
        self.calls += 1
        try:
            Call(self).run()
        except Fatal:
            raise StopUser from None
        except Retry as retry:
            gevent.sleep(min(retry.delay, max(0.0, self.deadline - time.monotonic())))


class Call:
    """One session: token, connect, turns, hang up."""

    def __init__(self, caller: Caller) -> None:
        self.caller, self.config, self.stats = caller, caller.config, caller.stats
        self.ws: websocket.WebSocket | None = None
        self.started, self.closed = Event(), Event()
        self.speech_done, self.reply, self.turn_done = Event(), Event(), Event()
        self.mic: deque[tuple[bytes, bool]] = deque()  # (frame, last frame of an utterance)
        self.hanging_up = False
        self.close_code: int | None = None
        self.ended_reason: str | None = None
        self.error_event = False  # an `error` event came: its close is not counted again
        self.awaiting: float | None = None  # when the turn awaiting its reply ended
        self.awaiting_tool = False
        self.stale_reply = False  # the reply now playing is older than the awaited turn
        self.reply_playing = False
        self.playback_reported = False
        self.started_ns = time.monotonic_ns()
        self.silence = audio.silent_frame(self.config.frame_ms)
        self.utterance = audio.split_frames(self.config.utterance, self.config.frame_ms)

    # --- the conversation ---------------------------------------------------------------

    def run(self) -> None:
        self.stats.sessions_attempted += 1
        token = self.mint()
        self.connect(token)
        self.stats.session_opened()
        sender = gevent.spawn(self.send_loop)
        try:
            self.converse()
        finally:
            self.hang_up()
            sender.kill()
            self.stats.session_closed()

    def remaining(self) -> float:
        return self.caller.deadline - time.monotonic()

    def converse(self) -> None:
        turns, turn = self.config.turns, 0
        barge_next = False
        while not self.closed.is_set() and self.remaining() > 0 and (not turns or turn < turns):
            turn += 1
            tool = bool(self.config.tool_every) and turn % self.config.tool_every == 0
            if barge_next and self.reply_playing:
                self.stats.barge_ins += 1
            self.stats.turns += 1
            if tool:
                self.stats.tool_turns += 1
                self.expect_reply(time.monotonic(), tool=True)
                self.send_text({"type": "text", "text": self.config.tool_turn_text})
            else:
                self.stats.turns_spoken += 1
                if not self.speak():
                    return
                if self.config.echo:
                    # The echo emulator answers no spoken turn: nothing to wait for.
                    self.awaiting = None
                    self.rest()
                    continue
            if not self.reply.wait(self.config.reply_timeout):
                if self.closed.is_set():
                    return
                self.stats.error("no_reply")
                self.awaiting = None
                self.rest()
                continue
            every = self.config.barge_in_every
            barge_next = bool(every) and (turn + 1) % every == 0
            if barge_next:
                gevent.sleep(self.config.barge_in_after)  # talk over the reply
                continue
            self.turn_done.wait(self.config.reply_timeout + 30)
            self.rest()

    def rest(self) -> None:
        pause = self.config.pause * self.caller.rng.uniform(0.5, 1.5)
        gevent.sleep(max(0.0, min(pause, self.remaining())))

    def speak(self) -> bool:
        """Put one utterance into the microphone; True once its last frame was sent."""
        self.speech_done.clear()
        frames = self.utterance
        self.mic.extend((f, i == len(frames) - 1) for i, f in enumerate(frames))
        seconds = len(frames) * self.config.frame_ms / 1000
        return self.speech_done.wait(seconds + 10) and not self.closed.is_set()

    def expect_reply(self, ended_at: float, *, tool: bool) -> None:
        self.reply.clear()
        self.awaiting, self.awaiting_tool = ended_at, tool
        self.stale_reply = self.reply_playing  # a barge-in: that reply is not ours

    # --- token and connection -----------------------------------------------------------

    def mint(self) -> str:
        url = f"{self.config.target}/api/v1/agents/{self.config.agent_id}/tokens/"
        user = f"loadtest-{self.caller.label}-{self.caller.calls}"
        body: dict[str, Any] = {"user_id": user, "uses": 1, "metadata": {"loadtest": True}}
        start = time.monotonic()
        try:
            response = self.caller.http.post(
                url,
                json=body,
                headers={"Authorization": f"Bearer {self.config.api_key}"},
                timeout=15,
                allow_redirects=False,  # never to another host (loadtest.net)
            )
        except requests.RequestException as exc:
            self.stats.error("http_unreachable")
            raise Retry(2.0) from exc
        ms = (time.monotonic() - start) * 1000
        if response.status_code != 201:
            self.stats.error(f"http_{response.status_code}")
            # A redirect: the target is not the platform's base URL (or wants https).
            if response.status_code in _FATAL_HTTP or is_redirect(response.status_code):
                raise Fatal(response.status_code)
            retry_after = response.headers.get("Retry-After", "")
            raise Retry(float(retry_after) if retry_after.isdigit() else 2.0)
        self.stats.token_mint.add(ms)
        token: str = response.json()["token"]
        return token

    def connect(self, token: str) -> None:
        start = time.monotonic()
        # The sender and the receiver share the socket.
        ws = websocket.WebSocket(enable_multithread=True, skip_utf8_validation=True)
        try:
            ws.connect(  # type: ignore[no-untyped-call]  # websocket-client: no annotations
                f"{self.config.ws_url}?token={token}",
                timeout=HANDSHAKE_TIMEOUT,
                suppress_origin=True,  # a non-browser client sends no Origin
                redirect_limit=0,  # never to another host (loadtest.net)
            )
        except (websocket.WebSocketException, OSError) as exc:
            answer = ws.handshake_response
            if answer is not None and is_redirect(answer.status):
                self.stats.error(f"ws_redirect_{answer.status}")
                raise Fatal(answer.status) from exc
            self.stats.error("ws_connect_failed")
            raise Retry(2.0) from exc
        self.ws = ws
        self.ws.settimeout(None)
        receiver = gevent.spawn(self.receive_loop)
        self.started.wait(START_TIMEOUT)
        ms = (time.monotonic() - start) * 1000
        if self.started.is_set() and not self.closed.is_set():
            self.stats.session_start.add(ms)
            return
        code = self.close_code
        if not self.error_event:
            self.stats.error(f"close_{code}" if code is not None else "start_timeout")
        receiver.kill()
        self.ws.close()
        if code in _FATAL_CLOSE:
            raise Fatal(code)
        raise Retry(2.0)

    def hang_up(self) -> None:
        """`close`: the session ends for good (no resume window left open on the server)."""
        self.hanging_up = True
        if not self.closed.is_set():
            self.send_text({"type": "close"})
            if not self.closed.wait(HANG_UP_TIMEOUT):
                self.stats.error("close_timeout")
        if self.close_code == 1000 and self.ended_reason == "client_closed":
            self.stats.sessions_completed += 1
        elif self.close_code not in (None, 1000) and not self.error_event:
            self.stats.error(f"close_{self.close_code}")
        if self.ws is not None:
            self.ws.close(timeout=1)

    # --- the microphone -------------------------------------------------------------------

    def send_loop(self) -> None:
        """One frame per period on a fixed schedule: lateness is measured, never accumulated."""
        period = self.config.frame_ms / 1000
        start = time.monotonic()
        for seq in itertools.count():
            if self.hanging_up or self.closed.is_set() or self.ws is None:
                return
            due = start + seq * period
            delay = due - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            self.stats.send_lag.add((time.monotonic() - due) * 1000)
            frame, last = self.mic.popleft() if self.mic else (self.silence, False)
            if self.config.echo:
                frame = audio.stamp(frame, seq)
            try:
                self.ws.send_binary(frame)
            except (websocket.WebSocketException, OSError):
                return  # the receiver sees the close and records it
            self.stats.frames_sent += 1
            if last:
                self.expect_reply(time.monotonic(), tool=False)
                self.speech_done.set()

    def send_text(self, message: dict[str, str]) -> None:
        if self.ws is None:
            return
        # A failure means the connection is gone: the receiver sees the close and records it.
        with contextlib.suppress(websocket.WebSocketException, OSError):
            self.ws.send(json.dumps(message))

    # --- what the server sends ------------------------------------------------------------

    def receive_loop(self) -> None:
        if self.ws is None:
            return
        try:
            while True:
                opcode, frame = self.ws.recv_data_frame(True)
                if opcode == websocket.ABNF.OPCODE_BINARY:
                    self.on_audio(frame.data)
                elif opcode == websocket.ABNF.OPCODE_TEXT:
                    self.on_event(json.loads(frame.data))
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    data = frame.data
                    self.close_code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                    return
        except (websocket.WebSocketException, OSError, ValueError):
            if self.close_code is None:
                self.close_code = 1006
        finally:
            self.closed.set()
            self.speech_done.set()
            self.reply.set()
            self.turn_done.set()

    def on_audio(self, data: bytes) -> None:
        if self.config.echo and self.on_echo(data):
            return
        self.on_output()
        if not self.playback_reported and not self.hanging_up:
            self.playback_reported = True
            self.send_text({"type": "playback.started"})  # saved, not played: on arrival

    def on_echo(self, data: bytes) -> bool:
        """Time an echoed frame of ours; False when `data` is model audio instead."""
        stamps = audio.read_echo(data)
        now = time.monotonic_ns()
        if stamps is None:
            return False
        _, sent, received = stamps
        if not self.started_ns <= sent <= received <= now:
            return False  # not a frame of this call: real model audio
        self.stats.echoes += 1
        self.stats.frame_rtt.add((now - sent) / 1e6)
        self.stats.frame_up.add((received - sent) / 1e6)
        self.stats.frame_down.add((now - received) / 1e6)
        return True

    def on_output(self) -> None:
        """Model audio or text: the first after a turn ended answers it."""
        self.reply_playing = True
        if self.awaiting is None or self.stale_reply:
            return
        ms = (time.monotonic() - self.awaiting) * 1000
        (self.stats.tool_turn_latency if self.awaiting_tool else self.stats.turn_latency).add(ms)
        self.stats.turns_answered += 1
        self.awaiting = None
        self.turn_done.clear()  # only this reply's own turn_complete ends the turn
        self.reply.set()

    def on_event(self, event: dict[str, object]) -> None:
        kind = event.get("type")
        if kind == "session.started":
            self.started.set()
        elif kind in ("text", "transcript.output"):
            self.on_output()
        elif kind in ("turn_complete", "interrupted"):
            if kind == "interrupted":
                self.stats.interruptions += 1
            self.reply_playing = self.stale_reply = self.playback_reported = False
            self.turn_done.set()
        elif kind == "tool.started":
            self.stats.tool_calls_started += 1
        elif kind == "tool.finished":
            self.stats.tool_calls_finished += 1
            if event.get("status") != "ok":
                self.stats.error(f"tool_{event.get('status')}")
        elif kind == "error":
            self.error_event = self.error_event or event.get("code") != "bad_message"
            self.stats.error(f"error_{event.get('code')}")
        elif kind == "warning":
            self.stats.warnings[f"{event.get('code')}"] += 1
        elif kind == "session.ended":
            self.ended_reason = str(event.get("reason"))
            self.stats.ended_reasons[self.ended_reason] += 1
