"""``LiveUpstream``: one logical Gemini Live session over as many connections as it takes.

It connects, runs one receive loop per connection, watches liveness (``liveness.py``),
follows ``goAway`` proactively, classifies every connection end (``close_causes.py``) and
reconnects: with the newest resumable handle, or as a fresh upstream session when the old
one cannot go on (session limit, rejected handle), always after a full-jitter wait and
within a budget (``backoff.py``). It reports what it receives and every state change to a
listener; it never decides anything about the client. docs/live-resilience.md tells the
whole story.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import random
import re
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from google.genai import errors, types
from google.genai.live import AsyncSession
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from sessions.relay import sdk_adapter
from sessions.relay.backoff import Backoff, ReconnectBudget
from sessions.relay.close_causes import Ending, Next, classify_close
from sessions.relay.liveness import Liveness

log = logging.getLogger(__name__)

# A resume refused this many times in a row before it was ready is given up for a fresh
# session: the handle's session is gone or stuck (e.g. its old socket is never released).
FRESH_AFTER_REFUSED_RESUMES = 3


class UpstreamState(enum.StrEnum):
    CONNECTING = "connecting"
    READY = "ready"
    RECONNECTING = "reconnecting"
    FAILED = "failed"


@dataclass(frozen=True)
class UpstreamSettings:
    connect_timeout: float = 10.0
    # Our own pings (fast path): a pong counts as "heard"; Gemini's take 8-30 s, so a pong
    # is never waited for, only welcomed.
    ping_interval: float = 5.0
    # Silent this long while a reply is due (after the user's turn, during the model's
    # turn, after a tool answer went up): stalled or dead. Silent this long with nothing
    # due, not even a pong: dead. Both then reconnect.
    reply_timeout: float = 4.0
    idle_timeout: float = 45.0
    # Recoveries of one unanswered user turn before it is given up (with a warning).
    reply_retries: int = 3
    # Reconnect this long before a goAway's timeLeft runs out when a turn is in progress.
    go_away_margin: float = 1.0
    # An idle goAway reconnects at a random moment within this window (never past the
    # deadline): a fleet told together does not redial together.
    go_away_spread: float = 5.0
    # Gemini's session limit without context compression (audio only): a 1011 at this age
    # is the limit, and the session goes on fresh.
    session_limit: float = 900.0
    stop_timeout: float = 2.0
    backoff: Backoff = field(default_factory=Backoff)
    # At most this many reconnects in any window, per session.
    budget: int = 30
    budget_window: float = 600.0

    def scaled(self, factor: float) -> UpstreamSettings:
        """Every duration divided by ``factor``: tests run an hour-long call in a minute
        against an emulator with the same time scale."""
        return replace(
            self,
            ping_interval=self.ping_interval / factor,
            reply_timeout=self.reply_timeout / factor,
            idle_timeout=self.idle_timeout / factor,
            go_away_margin=self.go_away_margin / factor,
            go_away_spread=self.go_away_spread / factor,
            session_limit=self.session_limit / factor,
            backoff=self.backoff.scaled(factor),
            budget_window=self.budget_window / factor,
        )


class UpstreamListener(Protocol):
    async def on_upstream_message(self, message: types.LiveServerMessage) -> None: ...

    async def on_upstream_audio(self, pcm: bytes) -> None:
        """A message that was one chunk of model audio and nothing else (``audio_path``)."""

    async def on_upstream_state(self, state: UpstreamState, reason: str) -> None: ...

    async def on_upstream_stall(self, *, recovering: bool) -> None:
        """A user turn got no reply: it is asked again (``recovering``), or given up."""


ConnectFactory = Callable[[str | None], AbstractAsyncContextManager[AsyncSession]]


class UpstreamFailed(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def parse_duration(value: str | None) -> float | None:
    """Protobuf Duration JSON ("50s", "1.5s") to seconds."""
    if not value:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)s\s*", value)
    return float(match.group(1)) if match else None


def close_reason(exc: errors.APIError) -> str:
    """The service's close reason: the SDK keeps it as the error's ``details``."""
    details = exc.details
    if isinstance(details, str):
        return details
    if isinstance(details, dict):
        inner = details.get("error", details)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(exc.message or "")


@dataclass
class _Connection:
    """What one connection did, for deciding what comes after it."""

    handle: str | None
    ready: bool = False
    any_message: bool = False


class LiveUpstream:
    def __init__(
        self,
        *,
        connect: ConnectFactory,
        listener: UpstreamListener,
        settings: UpstreamSettings | None = None,
        handle: str | None = None,
        prior_context: bool = False,
    ) -> None:
        self._connect = connect
        self._listener = listener
        self.settings = settings or UpstreamSettings()
        self.latest_handle = handle or None
        self.ready = asyncio.Event()
        self.session: AsyncSession | None = None
        self.connections = 0
        self.failure: UpstreamFailed | None = None
        # The context of the current connection starts empty (a fresh upstream session
        # after the first): the listener seeds it before anything else is sent.
        self.context_fresh = False
        # The conversation began before this object (a client's resume): a connection
        # without a handle is a fresh context even when it is our first, and a quota
        # refusal is a mid-call one.
        self._prior_context = prior_context or handle is not None
        self.liveness = Liveness(
            reply_timeout=self.settings.reply_timeout,
            idle_timeout=self.settings.idle_timeout,
            reply_retries=self.settings.reply_retries,
        )
        self._task: asyncio.Task[None] | None = None
        self._reconnect = asyncio.Event()
        self._reconnect_reason = ""
        self._go_away_timer: asyncio.TimerHandle | None = None
        self._go_away_pending = False
        self._session_started_at: float | None = None
        self.handshake_seconds: float | None = None
        self._stall_reported = False
        self._wake: asyncio.Future[None] | None = None
        self._silent_long = False  # the last verdict was the idle timeout's
        self._budget = ReconnectBudget(self.settings.budget, self.settings.budget_window)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="live-upstream")

    async def stop(self) -> None:
        """Close the upstream connection and end every task this object started."""
        task, self._task = self._task, None
        self.ready.clear()
        self._cancel_go_away_timer()
        if task is None or task.done():
            return
        task.cancel()
        try:
            async with asyncio.timeout(self.settings.stop_timeout):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        except TimeoutError:
            # A black-holed socket would hold its close handshake for websockets' 10 s.
            if self.session is not None:
                await sdk_adapter.abort(self.session)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def wait_ready(self) -> AsyncSession:
        while True:
            await self.ready.wait()
            if self.session is not None:
                return self.session

    def request_reconnect(self, reason: str) -> None:
        self._reconnect_reason = reason
        self._reconnect.set()

    @property
    def session_age(self) -> float | None:
        """Seconds since the current upstream session began (across resumptions)."""
        started = self._session_started_at
        return None if started is None else time.monotonic() - started

    # --- the connection loop --------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0  # failed tries in a row in this outage
        refused_resumes = 0
        reason = ""
        await self._listener.on_upstream_state(UpstreamState.CONNECTING, "")
        while True:
            conn = _Connection(handle=self.latest_handle)
            ending: Ending | None = None
            try:
                reason = await self._connection(conn, reason)
            except errors.APIError as exc:
                ending = classify_close(
                    exc.code,
                    close_reason(exc),
                    resuming=conn.handle is not None,
                    at_setup=not conn.ready,
                    session_age=self.session_age if conn.ready else None,
                    session_limit=self.settings.session_limit,
                )
                reason = ending.cause
            except (TimeoutError, OSError, ConnectionClosed, InvalidHandshake) as exc:
                reason = f"upstream_error_{type(exc).__name__}"
            except asyncio.CancelledError:
                raise
            except Exception:  # an SDK or parsing surprise: log it, and treat it as a drop
                log.exception("upstream connection failed")
                reason = "upstream_error"
            finally:
                self.ready.clear()
                self.session = None
            if ending is not None:
                if conn.handle is not None and not conn.ready and ending.next is Next.RESUME:
                    refused_resumes += 1
                    if refused_resumes >= FRESH_AFTER_REFUSED_RESUMES:
                        ending = Ending("resume_refused", Next.FRESH, ending.detail)
                        reason = ending.cause
                else:
                    refused_resumes = 0
                stop = await self._after_ending(ending, conn)
                if stop:
                    return
            planned = reason in ("go_away", "go_away_deadline", "requested")
            # A connection that carried model messages was healthy: its drop starts afresh.
            failures = 0 if (conn.any_message or planned) else failures + 1
            if failures > self.settings.backoff.max_tries:
                await self._fail(UpstreamFailed(_give_up_reason(ending), reason))
                return
            if not self._budget.take():
                await self._fail(UpstreamFailed("upstream_unavailable", "reconnect budget spent"))
                return
            await self._listener.on_upstream_state(UpstreamState.RECONNECTING, reason)
            if not planned:  # a goAway's spread was taken before the close
                await asyncio.sleep(self.settings.backoff.delay(max(0, failures - 1)))

    async def _connection(self, conn: _Connection, reason: str) -> str:
        """One connection from connect to its end; returns why it ended (or raises)."""
        async with contextlib.AsyncExitStack() as stack:
            began = time.monotonic()
            async with asyncio.timeout(self.settings.connect_timeout):
                session = await stack.enter_async_context(self._connect(conn.handle))
            # The upstream's share of a session start (TCP, TLS, WebSocket, setup reply).
            self.handshake_seconds = time.monotonic() - began
            stack.push_async_exit(functools.partial(self._close_when_stopped, session))
            self.connections += 1
            self._reset_connection_state()
            if conn.handle is None:
                self._session_started_at = time.monotonic()
                self.context_fresh = self.connections > 1 or self._prior_context
            else:
                self.context_fresh = False
                if self._session_started_at is None:  # resumed from another process
                    self._session_started_at = time.monotonic()
            sdk_adapter.tap_model_audio(session, functools.partial(self._on_audio, conn))
            self.session = session
            conn.ready = True
            # The listener seeds and queues replay before anything else may be sent.
            await self._listener.on_upstream_state(UpstreamState.READY, reason)
            self.ready.set()
            ended = await self._pump(session, conn)
            self.ready.clear()
            if ended == "upstream_unresponsive" and self._silent_long:
                await sdk_adapter.abort(session)  # dead for the idle timeout: no close
            elif ended in ("stall", "upstream_unresponsive"):
                # The client hears of it now, not after the close below.
                await self._listener.on_upstream_state(UpstreamState.RECONNECTING, ended)
                # The socket may still answer (slow pongs make a stall look dead): close it
                # properly, so the service lets the session go at once (it refuses a resume
                # while an older socket is open), unless the close itself hangs.
                await _close_or_abort(session, min(1.0, self.settings.stop_timeout))
            self.session = None
            return ended

    async def _close_when_stopped(
        self, session: AsyncSession, kind: type[BaseException] | None, *_: object
    ) -> bool:
        """Leaving a connection because the upstream is stopped (its task cancelled): close
        with 1000 first. websockets closes a connection left by any exception with 1011,
        which to the service reads as our crash."""
        if kind is not None and issubclass(kind, asyncio.CancelledError):
            with contextlib.suppress(Exception):
                await _close_or_abort(session, min(1.0, self.settings.stop_timeout))
        return False  # the cancellation goes on

    async def _after_ending(self, ending: Ending, conn: _Connection) -> bool:
        """Act on a classified close; True when the upstream is finished."""
        if ending.next is Next.FAIL:
            await self._fail(UpstreamFailed("upstream_rejected", ending.detail))
            return True
        if ending.next is Next.BUSY and self.connections == 0 and not self._prior_context:
            # Refused for quota before the session ever started: say so now, do not queue.
            await self._fail(UpstreamFailed("upstream_busy", ending.detail))
            return True
        if ending.next is Next.FRESH:
            if conn.handle is None and not conn.ready:
                # Even a fresh session is refused this way: nothing left to try.
                await self._fail(UpstreamFailed("upstream_rejected", ending.detail))
                return True
            log.info("upstream session continues fresh: %s (%s)", ending.cause, ending.detail)
            self.latest_handle = None
        return False

    async def _fail(self, failure: UpstreamFailed) -> None:
        self.failure = failure
        await self._listener.on_upstream_state(UpstreamState.FAILED, failure.reason)

    def _reset_connection_state(self) -> None:
        self._reconnect.clear()
        self._reconnect_reason = ""
        self._go_away_pending = False
        self._stall_reported = False
        self._cancel_go_away_timer()
        self.liveness.reset()

    def _cancel_go_away_timer(self) -> None:
        if self._go_away_timer is not None:
            self._go_away_timer.cancel()
            self._go_away_timer = None

    async def _pump(self, session: AsyncSession, conn: _Connection) -> str:
        """Run until this connection ends; returns why (or raises what closed it)."""
        receiver = asyncio.create_task(self._receive(session, conn), name="live-receive")
        watchdog = asyncio.create_task(self._watch(session), name="live-watchdog")
        requested = asyncio.create_task(self._reconnect.wait(), name="live-reconnect-wait")
        tasks: set[asyncio.Task[Any]] = {receiver, watchdog, requested}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if receiver in done:
            receiver.result()  # raises the APIError / ConnectionClosed that ended it
            return "upstream_closed"
        if watchdog in done and watchdog.result():
            return str(watchdog.result())
        return self._reconnect_reason or "requested"

    async def _receive(self, session: AsyncSession, conn: _Connection) -> None:
        while True:
            async for message in session.receive():
                conn.any_message = True
                self.liveness.heard_message()
                self._track(message)
                await self._listener.on_upstream_message(message)
                await self._check_stall()

    async def _on_audio(self, conn: _Connection, pcm: bytes) -> None:
        conn.any_message = True
        self.liveness.heard_message()
        if self.liveness.model_output():  # what _track concludes from a model turn
            self._poke()
        await self._listener.on_upstream_audio(pcm)

    def _track(self, message: types.LiveServerMessage) -> None:
        content = message.server_content
        liveness = self.liveness
        if content is not None:
            if content.interrupted:
                liveness.interrupted()
            if (content.model_turn or content.output_transcription) and liveness.model_output():
                self._poke()
            if content.turn_complete:
                liveness.turn_complete()
        if message.tool_call and message.tool_call.function_calls:
            liveness.tool_calls(len(message.tool_call.function_calls))
        if message.tool_call_cancellation and message.tool_call_cancellation.ids:
            # Cancelled calls get no answer: the model no longer waits for them.
            liveness.tool_calls_cancelled(len(message.tool_call_cancellation.ids))
        update = message.session_resumption_update
        # A stalled turn's handle holds the question without its reply: not kept.
        if update and update.resumable and update.new_handle and not liveness.stall_detected:
            self.latest_handle = update.new_handle
            if self._go_away_pending:
                self.request_reconnect("go_away")
        if message.go_away is not None:
            self._on_go_away(parse_duration(message.go_away.time_left))

    async def _check_stall(self) -> None:
        """An empty turnComplete answered the user's turn: ask again on a new connection
        from the handle before it, or give the turn up once it was asked enough."""
        liveness = self.liveness
        if liveness.stall_detected and not self._stall_reported:
            self._stall_reported = True
            await self._listener.on_upstream_stall(recovering=True)
            self.request_reconnect("stall")
        elif liveness.stall_given_up:
            liveness.stall_given_up = False
            await self._listener.on_upstream_stall(recovering=False)

    @property
    def stalled_turn(self) -> bool:
        """The turn that just completed was empty and is being asked again: its
        ``turnComplete`` and handle must not count."""
        return self.liveness.stall_detected

    # --- the listener's signals -------------------------------------------------------------

    def expect_reply(self, *, speech_ended_at: float | None = None, confirmed: bool = True) -> None:
        """The user's turn ended (or a tool answer went up): a reply is due. ``confirmed``
        False: only our estimate says the user spoke (the service has not shown it heard
        speech yet), so the turn gets one recovery at most."""
        self.liveness.expect_reply(speech_ended_at, confirmed=confirmed)
        self._poke()

    def speech_heard(self) -> None:
        """The service transcribed the user's speech: the turn is real."""
        self.liveness.speech_heard()

    def speech_resumed(self) -> None:
        self.liveness.speech_resumed()

    def tool_responses_sent(self, count: int, *, reply_expected: bool = True) -> None:
        self.liveness.tool_responses_sent(count, reply_expected=reply_expected)
        self._poke()

    # --- goAway -----------------------------------------------------------------------------

    def _on_go_away(self, time_left: float | None) -> None:
        left = time_left if time_left is not None else 0.0
        latest = max(0.0, left - self.settings.go_away_margin)
        loop = asyncio.get_running_loop()
        self._cancel_go_away_timer()
        if not self.liveness.busy:
            # Idle: the newest handle is current. Leave at a random moment of the window.
            delay = random.uniform(0.0, min(self.settings.go_away_spread, latest))  # noqa: S311
            self._go_away_timer = loop.call_later(delay, self.request_reconnect, "go_away")
            return
        # Mid-turn: wait for the turn's handle, but never past the deadline (less a random
        # part of the spread, so sessions told together do not all leave at the deadline).
        self._go_away_pending = True
        spread = random.uniform(0.0, min(self.settings.go_away_spread, latest / 2))  # noqa: S311
        self._go_away_timer = loop.call_later(
            latest - spread, self.request_reconnect, "go_away_deadline"
        )

    # --- liveness ---------------------------------------------------------------------------

    async def _watch(self, session: AsyncSession) -> str | None:
        """Why this connection is to be given up (unresponsive, or a turn that got no reply).
        It sleeps until the next ping or the next moment a verdict could fall due, and a new
        due reply wakes it (``_poke``): no polling. Pongs only ever make it more patient."""
        ping = sdk_adapter.pinger(session)
        liveness = self.liveness
        interval = self.settings.ping_interval
        pings: set[asyncio.Task[None]] = set()
        next_ping = time.monotonic() + interval
        loop = asyncio.get_running_loop()
        try:
            while True:
                now = time.monotonic()
                wake = liveness.next_check(now, pinging=ping is not None)
                if ping is not None:
                    wake = min(wake, next_ping)
                await self._nap(loop, max(0.005, wake - now))
                now = time.monotonic()
                if ping is not None and now >= next_ping:
                    next_ping = now + interval
                    task = asyncio.create_task(self._ping_once(ping), name="live-ping")
                    pings.add(task)
                    task.add_done_callback(pings.discard)
                verdict = liveness.verdict(now, pinging=ping is not None)
                if verdict is None:
                    continue
                if verdict == "stall" or verdict == "upstream_unresponsive_due":
                    recovering = liveness.take_recovery()
                    await self._listener.on_upstream_stall(recovering=recovering)
                    if not recovering:
                        continue  # given up: the turn is no longer awaited
                    self._silent_long = False
                    return "stall" if verdict == "stall" else "upstream_unresponsive"
                self._silent_long = True
                return verdict
        finally:
            self._wake = None
            for task in pings:
                task.cancel()

    async def _nap(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        wake: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _settle_none, wake)
        self._wake = wake
        try:
            await wake
        finally:
            timer.cancel()

    def _poke(self) -> None:
        """A reply became due: the watchdog re-plans its sleep."""
        if self._wake is not None:
            _settle_none(self._wake)

    async def _ping_once(self, ping: Callable[[], Any]) -> None:
        with contextlib.suppress(ConnectionClosed, asyncio.CancelledError):
            await ping()
            self.liveness.heard_pong()


def _settle_none(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _close_or_abort(session: AsyncSession, limit: float) -> None:
    try:
        async with asyncio.timeout(limit):
            await session.close()
    except (TimeoutError, OSError, ConnectionClosed):
        await sdk_adapter.abort(session)


def _give_up_reason(ending: Ending | None) -> str:
    if ending is not None and ending.next is Next.BUSY:
        return "upstream_busy"
    return "upstream_unavailable"
