"""An asyncio client session over `websockets`: connect, send, receive, resume after drops.

    session = LiveSession(url, token)
    started = await session.start()          # SessionRefused if the handshake is refused
    await session.send_text("hello")
    async for item in session.received():    # Event, bytes (model audio) or ClientNotice
        ...                                  # when a reply starts playing (playback.py):
        await session.playback_started()     #   voice-to-voice latency as heard
    end = await session.close()              # SessionEnd: code, reason, what it means

A connection that ends without a close frame (a network drop), or with a code the protocol
marks resumable (4012: the server process is stopping), is reconnected with the newest
resume token after a full-jitter backoff; messages queued meanwhile go out on the new
connection (audio bounded to `max_pending_audio_bytes`, oldest dropped first, as the
server does). Every other close ends the session with its code, the server's reason text
and the client's own message for that code.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from voice_client import protocol
from voice_client.protocol import ErrorEvent, Event, SessionEnded, SessionStarted

# 2 s of 16 kHz PCM16, what the server itself buffers during an outage.
DEFAULT_PENDING_AUDIO_BYTES = 64_000


@dataclass(frozen=True)
class ClientNotice:
    """Something the client did on its own: ``reconnecting`` after a drop."""

    kind: str
    message: str


Received = Event | bytes | ClientNotice


@dataclass(frozen=True)
class SessionEnd:
    """How the session ended, from the last connection's close."""

    code: int
    reason: str  # the close frame's reason text, if the server sent one
    refused: bool  # closed before `session.started` on that connection: a refusal
    ended_reason: str | None = None  # `session.ended`'s reason, if one came
    error: ErrorEvent | None = None  # the last `error` event, if any
    connect_error: str | None = None  # the connection could not be opened at all

    @property
    def meaning(self) -> protocol.CloseCode:
        return protocol.close_code(self.code)

    @property
    def ok(self) -> bool:
        """A normal end: close 1000 after the session started."""
        return self.code == 1000 and not self.refused and self.connect_error is None

    def describe(self) -> str:
        """One line for people, without secrets (the URL's token is never in it)."""
        if self.connect_error is not None:
            return f"cannot connect: {self.connect_error}"
        line = protocol.describe_close(self.code, self.reason, refused=self.refused)
        if self.ended_reason:
            line += f"; session ended: {self.ended_reason}"
        if self.error is not None:
            line += f"; error {self.error.code}: {self.error.message}"
            if self.error.retry_after is not None:
                line += f" (retry after {self.error.retry_after} s)"
        return line


class SessionRefused(Exception):
    """The session never started; ``end`` says why."""

    def __init__(self, end: SessionEnd) -> None:
        self.end = end
        super().__init__(end.describe())


class _EndOfStream:
    pass


_END = _EndOfStream()


class LiveSession:
    """One end-user session of the platform, across as many connections as it takes."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        origin: str | None = None,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        open_timeout: float = 15.0,
        max_pending_audio_bytes: int = DEFAULT_PENDING_AUDIO_BYTES,
        on_frame: Callable[[str], None] | None = None,
    ) -> None:
        protocol.live_url(url, token=token)  # fails early on a malformed URL
        self.url = url
        self._token = token
        self.origin = origin
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.open_timeout = open_timeout
        self.max_pending_audio_bytes = max_pending_audio_bytes
        # Sees every text frame as the server sent it, before parsing: the tests check each
        # against the protocol schema, and `voice-agent --log-events` writes them down.
        self.on_frame = on_frame
        self.started: SessionStarted | None = None  # the newest `session.started`
        self.end: SessionEnd | None = None
        self.reconnects = 0
        self.dropped_audio_frames = 0
        self._outbox: deque[str | bytes] = deque()
        self._pending_audio = 0
        self._outbox_ready = asyncio.Event()
        self._closing = False
        self._live = False  # a connection's session has started and is still open
        self._received: asyncio.Queue[Received | _EndOfStream] = asyncio.Queue()
        self._first_start = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    @property
    def resume_token(self) -> str | None:
        return self.started.resume_token if self.started is not None else None

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> SessionStarted:
        """Connect and wait for `session.started`; SessionRefused if it never comes."""
        self._runner = asyncio.create_task(self._run(), name="voice-client-session")
        started = asyncio.create_task(self._first_start.wait())
        try:
            await asyncio.wait({self._runner, started}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
        if self.started is None:
            await self._runner
            assert self.end is not None  # noqa: S101 (the runner always sets it)
            raise SessionRefused(self.end)
        return self.started

    async def wait_end(self) -> SessionEnd:
        if self._runner is None:
            raise RuntimeError("the session was not started")
        await asyncio.shield(self._runner)
        assert self.end is not None  # noqa: S101 (the runner always sets it)
        return self.end

    async def close(self, within: float = 10.0) -> SessionEnd:
        """Send `close` after everything queued, and wait for the server to end the session;
        past ``within`` seconds the connection is abandoned (the resume window ends it)."""
        self._closing = True
        self._outbox_ready.set()
        try:
            async with asyncio.timeout(within):
                return await self.wait_end()
        except TimeoutError:
            await self.abort()
            return await self.wait_end()

    async def abort(self) -> None:
        """Drop the connection at once, without a close message."""
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner

    async def received(self) -> AsyncIterator[Received]:
        """Everything that arrives, in order, until the session ends."""
        while True:
            item = await self._received.get()
            if isinstance(item, _EndOfStream):
                self._received.put_nowait(item)  # later readers stop too
                return
            yield item

    # --- sending -------------------------------------------------------------------------

    def _queue(self, item: str | bytes) -> None:
        if self._closing:
            raise RuntimeError("the session is closing")
        self._outbox.append(item)
        if isinstance(item, bytes):
            self._pending_audio += len(item)
            while self._pending_audio > self.max_pending_audio_bytes:
                self._drop_oldest_audio()
        self._outbox_ready.set()

    def _drop_oldest_audio(self) -> None:
        for index, queued in enumerate(self._outbox):
            if isinstance(queued, bytes):
                del self._outbox[index]
                self._pending_audio -= len(queued)
                self.dropped_audio_frames += 1
                return

    async def send_text(self, text: str, *, turn_complete: bool = True) -> None:
        self._queue(protocol.text_message(text, turn_complete=turn_complete))

    async def send_audio(self, pcm: bytes) -> None:
        """One frame of 16 kHz mono PCM16 (see `audio.frames`)."""
        self._queue(protocol.audio_frame(pcm))

    async def audio_end(self) -> None:
        self._queue(protocol.audio_end_message())

    async def activity_start(self) -> None:
        self._queue(protocol.activity_start_message())

    async def activity_end(self) -> None:
        self._queue(protocol.activity_end_message())

    async def ping(self, ping_id: str | int | None = None) -> None:
        self._queue(protocol.ping_message(ping_id))

    async def playback_started(self) -> bool:
        """Tell the server the reply's first audio started playing (once per reply: see
        `voice_client.playback`). Sent only on a live connection: a report held through a
        reconnect would arrive late and time the wrong moment. True when it was queued."""
        if self._closing or not self._live:
            return False
        self._queue(protocol.playback_started_message())
        return True

    # --- the connection loop -----------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        # Full jitter: clients dropped together (a deploy) do not come back together.
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))  # noqa: S311

    def _finish(self, end: SessionEnd) -> None:
        self.end = end
        self._received.put_nowait(_END)

    async def _run(self) -> None:
        failures = 0  # connections in a row that did not start (or resume) the session
        try:
            while True:
                resume = self.resume_token
                url = (
                    protocol.live_url(self.url, resume=resume)
                    if resume
                    else protocol.live_url(self.url, token=self._token)
                )
                try:
                    ws = await connect(
                        url,
                        origin=self.origin,  # type: ignore[arg-type]  # a str is an Origin
                        open_timeout=self.open_timeout,
                        compression=None,  # audio does not compress; deflate costs CPU
                        max_size=2**22,
                    )
                except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                    # InvalidURI's text holds the URL, and with it the token: never shown.
                    detail = "invalid URL" if isinstance(exc, InvalidURI) else str(exc)
                    detail = detail or type(exc).__name__
                    if self.started is None or failures >= self.max_attempts:
                        self._finish(
                            SessionEnd(
                                protocol.NO_CLOSE_FRAME, "", refused=True, connect_error=detail
                            )
                        )
                        return
                    failures += 1
                    await self._pause(failures, f"cannot connect ({detail})")
                    continue
                end = await self._serve(ws)
                if end.code == 1000 or not protocol.should_resume(end.code):
                    self._finish(end)
                    return
                if end.refused:
                    failures += 1
                else:
                    failures = 0
                if failures >= self.max_attempts:
                    self._finish(end)
                    return
                self.reconnects += 1
                await self._pause(failures, protocol.close_code(end.code).message)
        except asyncio.CancelledError:
            if self.end is None:
                self._finish(SessionEnd(protocol.NO_CLOSE_FRAME, "aborted by the client", False))
            raise

    async def _pause(self, attempt: int, why: str) -> None:
        delay = self._backoff(attempt)
        self._received.put_nowait(
            ClientNotice("reconnecting", f"{why} Reconnecting in {delay:.1f} s.")
        )
        await asyncio.sleep(delay)

    async def _serve(self, ws: ClientConnection) -> SessionEnd:
        """Read one connection to its end; its writer starts once the session (re)started."""
        started_here = False
        ended_reason: str | None = None
        error: ErrorEvent | None = None
        writer: asyncio.Task[None] | None = None
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    self._received.put_nowait(message)
                    continue
                if self.on_frame is not None:
                    self.on_frame(message)
                try:
                    event = protocol.parse_event(message)
                except protocol.ProtocolError as exc:
                    self._received.put_nowait(ClientNotice("protocol_error", str(exc)))
                    continue
                if isinstance(event, SessionStarted):
                    self.started = event
                    started_here = True
                    self._live = True
                    self._first_start.set()
                    if writer is None:
                        writer = asyncio.create_task(self._write(ws), name="voice-client-writer")
                elif isinstance(event, SessionEnded):
                    ended_reason = event.reason
                elif isinstance(event, ErrorEvent):
                    error = event
                self._received.put_nowait(event)
        except ConnectionClosed:
            pass
        finally:
            self._live = False
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
            if ws.close_code is None:  # cancelled while open (abort)
                ws.transport.abort()
        code = ws.close_code if ws.close_code is not None else protocol.NO_CLOSE_FRAME
        return SessionEnd(
            code,
            ws.close_reason or "",
            refused=not started_here,
            ended_reason=ended_reason,
            error=error,
        )

    async def _write(self, ws: ClientConnection) -> None:
        close_sent = False
        with contextlib.suppress(ConnectionClosed):
            while True:
                if not self._outbox:
                    if self._closing and not close_sent:
                        close_sent = True
                        await ws.send(protocol.close_message())
                        continue
                    self._outbox_ready.clear()
                    await self._outbox_ready.wait()
                    continue
                item = self._outbox.popleft()
                if isinstance(item, bytes):
                    self._pending_audio -= len(item)
                try:
                    await ws.send(item)
                except ConnectionClosed:
                    # Not delivered: it goes first on the next connection.
                    self._outbox.appendleft(item)
                    if isinstance(item, bytes):
                        self._pending_audio += len(item)
                    raise
