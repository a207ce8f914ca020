"""``LiveUpstream``: one logical Gemini Live session over as many connections as it takes.

It connects (with backoff), runs one receive loop per connection, pings the socket to
notice a silent black hole within seconds (websockets' own keepalive takes ~40 s), follows
``goAway`` proactively, and reconnects with the newest resumable handle. It reports what it
receives and every state change to a listener; it never decides anything about the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from google.genai import errors, types
from google.genai.live import AsyncSession
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from sessions.relay import sdk_adapter
from sessions.relay.backoff import Backoff

log = logging.getLogger(__name__)

# The service rejects the request itself (bad setup, auth, unknown model): retrying is futile.
FATAL_CLOSE_CODES = frozenset({1007, 1008})


class UpstreamState(enum.StrEnum):
    CONNECTING = "connecting"
    READY = "ready"
    RECONNECTING = "reconnecting"
    FAILED = "failed"


@dataclass(frozen=True)
class UpstreamSettings:
    connect_timeout: float = 10.0
    # Ping every interval, give up after timeout: a black hole is noticed within their sum.
    ping_interval: float = 1.5
    ping_timeout: float = 2.0
    # Reconnect this long before a goAway's timeLeft runs out when a turn is in progress.
    go_away_margin: float = 1.0
    stop_timeout: float = 2.0
    backoff: Backoff = field(default_factory=Backoff)


class UpstreamListener(Protocol):
    async def on_upstream_message(self, message: types.LiveServerMessage) -> None: ...

    async def on_upstream_audio(self, pcm: bytes) -> None:
        """A message that was one chunk of model audio and nothing else (``audio_path``)."""

    async def on_upstream_state(self, state: UpstreamState, reason: str) -> None: ...


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


class LiveUpstream:
    def __init__(
        self,
        *,
        connect: ConnectFactory,
        listener: UpstreamListener,
        settings: UpstreamSettings | None = None,
        handle: str | None = None,
    ) -> None:
        self._connect = connect
        self._listener = listener
        self.settings = settings or UpstreamSettings()
        self.latest_handle = handle or None
        self.ready = asyncio.Event()
        self.session: AsyncSession | None = None
        self.connections = 0
        self.failure: UpstreamFailed | None = None
        self._task: asyncio.Task[None] | None = None
        self._reconnect = asyncio.Event()
        self._reconnect_reason = ""
        self._go_away_timer: asyncio.TimerHandle | None = None
        self._go_away_pending = False
        self._in_turn = False
        self._pending_tool_calls = 0

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="live-upstream")

    async def stop(self) -> None:
        """Close the upstream connection and end every task this object started."""
        task, self._task = self._task, None
        self.ready.clear()
        if self._go_away_timer is not None:
            self._go_away_timer.cancel()
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

    # --- the connection loop --------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        reason = ""
        await self._listener.on_upstream_state(UpstreamState.CONNECTING, "")
        while True:
            progress = _Progress()
            try:
                async with contextlib.AsyncExitStack() as stack:
                    async with asyncio.timeout(self.settings.connect_timeout):
                        session = await stack.enter_async_context(self._connect(self.latest_handle))
                    self.connections += 1
                    self._reset_connection_state()
                    sdk_adapter.tap_model_audio(
                        session, functools.partial(self._on_audio, progress)
                    )
                    self.session = session
                    self.ready.set()
                    await self._listener.on_upstream_state(UpstreamState.READY, reason)
                    reason = await self._pump(session, progress)
                    self.ready.clear()
                    if reason == "upstream_unresponsive":
                        await sdk_adapter.abort(session)
                    self.session = None
            except errors.APIError as exc:
                if exc.code in FATAL_CLOSE_CODES:
                    await self._fail(UpstreamFailed("upstream_rejected", str(exc.details or "")))
                    return
                reason = f"upstream_closed_{exc.code}"
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
            planned = reason.startswith("go_away") or reason == "requested"
            # A connection that carried model messages was healthy: its drop starts afresh.
            failures = 0 if (progress.any or planned) else failures + 1
            if failures > self.settings.backoff.max_tries:
                await self._fail(UpstreamFailed("upstream_unavailable", reason))
                return
            await self._listener.on_upstream_state(UpstreamState.RECONNECTING, reason)
            if failures:
                await asyncio.sleep(self.settings.backoff.delay(failures))

    async def _fail(self, failure: UpstreamFailed) -> None:
        self.failure = failure
        await self._listener.on_upstream_state(UpstreamState.FAILED, failure.reason)

    def _reset_connection_state(self) -> None:
        self._reconnect.clear()
        self._reconnect_reason = ""
        self._go_away_pending = False
        self._in_turn = False
        self._pending_tool_calls = 0
        if self._go_away_timer is not None:
            self._go_away_timer.cancel()
            self._go_away_timer = None

    async def _pump(self, session: AsyncSession, progress: _Progress) -> str:
        """Run until this connection ends; returns why (or raises what closed it)."""
        receiver = asyncio.create_task(self._receive(session, progress), name="live-receive")
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
            return "upstream_unresponsive"
        return self._reconnect_reason or "requested"

    async def _receive(self, session: AsyncSession, progress: _Progress) -> None:
        while True:
            async for message in session.receive():
                progress.any = True
                self._track(message)
                await self._listener.on_upstream_message(message)

    async def _on_audio(self, progress: _Progress, pcm: bytes) -> None:
        progress.any = True
        self._in_turn = True  # what _track concludes from a model turn
        await self._listener.on_upstream_audio(pcm)

    def _track(self, message: types.LiveServerMessage) -> None:
        content = message.server_content
        if content is not None:
            if content.turn_complete:
                self._in_turn = False
            elif content.model_turn or content.output_transcription:
                self._in_turn = True
        if message.tool_call and message.tool_call.function_calls:
            self._pending_tool_calls += len(message.tool_call.function_calls)
        update = message.session_resumption_update
        if update is not None and update.resumable and update.new_handle:
            self.latest_handle = update.new_handle
            if self._go_away_pending:
                self.request_reconnect("go_away")
        if message.go_away is not None:
            self._on_go_away(parse_duration(message.go_away.time_left))

    def tool_responses_sent(self, count: int) -> None:
        self._pending_tool_calls = max(0, self._pending_tool_calls - count)

    def _on_go_away(self, time_left: float | None) -> None:
        if not self._in_turn and not self._pending_tool_calls:
            self.request_reconnect("go_away")  # idle: the newest handle is current
            return
        # Mid-turn: wait for the turn's handle, but never past the deadline.
        self._go_away_pending = True
        delay = max(
            0.0, (time_left if time_left is not None else 0.0) - self.settings.go_away_margin
        )
        loop = asyncio.get_running_loop()
        if self._go_away_timer is not None:
            self._go_away_timer.cancel()
        self._go_away_timer = loop.call_later(delay, self.request_reconnect, "go_away_deadline")

    async def _watch(self, session: AsyncSession) -> bool:
        """True when the socket stopped answering pings (a black hole)."""
        ping = sdk_adapter.pinger(session)
        if ping is None:  # SDK methods only: websockets' keepalive (~40 s) is what is left
            await asyncio.Event().wait()  # never set: _pump cancels this task
            return False
        while True:
            await asyncio.sleep(self.settings.ping_interval)
            try:
                # The ping itself waits for the write buffer to drain: time it out too.
                async with asyncio.timeout(self.settings.ping_timeout):
                    await ping()
            except TimeoutError:
                return True
            except ConnectionClosed:
                return False  # the receive loop reports the close itself
            await asyncio.sleep(0)


@dataclass
class _Progress:
    any: bool = False
