"""A simulated carrier: our own client of the Twilio Media Streams protocol, in real time.

It sends the caller's audio as 20 ms μ-law frames on a real-time schedule (silence when
nothing is said), keeps a playback buffer that plays one 20 ms frame every 20 ms,
echoes each mark when the audio queued before it has played, and on ``clear`` drops its
buffer and echoes the marks still in it (as Twilio does). Everything is recorded with
its time, for the tests to judge.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from telephony.audio import ULAW_FRAME_BYTES, pcm16_to_ulaw, ulaw_to_pcm16
from voice_platform.routing import websocket_urlpatterns

APP = URLRouter(websocket_urlpatterns)
FRAME = 0.02
ULAW_SILENCE = b"\xff" * ULAW_FRAME_BYTES


def tone_ulaw(ms: int, freq: float = 440.0, amplitude: float = 0.25) -> bytes:
    """A sine at 8 kHz, μ-law: the caller speaking."""
    t = np.arange(8 * ms) / 8000
    pcm = (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()
    return pcm16_to_ulaw(pcm)


class NetworkStream:
    """A real WebSocket (to a Daphne process) with the communicator's methods the
    simulated carrier uses."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._pending: asyncio.Task[Any] | None = None

    @classmethod
    async def open(cls, url: str) -> NetworkStream:
        import websockets

        return cls(await websockets.connect(url))

    async def send_to(self, text_data: str) -> None:
        await self.ws.send(text_data)

    async def receive_output(self, timeout: float) -> dict[str, Any]:
        import websockets

        if self._pending is None:
            self._pending = asyncio.ensure_future(self.ws.recv())
        done, _ = await asyncio.wait({self._pending}, timeout=timeout)
        if not done:
            raise TimeoutError
        task, self._pending = self._pending, None
        try:
            return {"type": "websocket.send", "text": task.result()}
        except websockets.ConnectionClosed:
            return {"type": "websocket.close", "code": self.ws.close_code}

    async def receive_nothing(self, timeout: float) -> bool:
        """True when nothing arrives within ``timeout`` (what arrives is kept for later)."""
        if self._pending is None:
            self._pending = asyncio.ensure_future(self.ws.recv())
        done, _ = await asyncio.wait({self._pending}, timeout=timeout)
        return not done

    async def disconnect(self) -> None:
        await self.ws.close()


@dataclass
class Played:
    at: float
    frame: bytes


@dataclass
class CarrierSim:
    comm: WebsocketCommunicator
    call_sid: str
    stream_sid: str
    account_sid: str
    # What the platform sent, in order: (time, message).
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    played: list[Played] = field(default_factory=list)
    marks_echoed: list[tuple[float, str, bool]] = field(default_factory=list)  # name, played?
    clears: list[float] = field(default_factory=list)
    sent_before_start: list[dict[str, Any]] = field(default_factory=list)
    buffer_depth: list[int] = field(default_factory=list)  # frames queued, at each play tick
    close_code: int | None = None
    _buffer: deque[tuple[float, bytes] | str] = field(default_factory=deque)  # (arrival, frame)
    _speech: deque[bytes] = field(default_factory=deque)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _seq: int = 0
    _chunk: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def dial_url(cls, url: str, *, call_sid: str, account_sid: str) -> CarrierSim:
        """A stream over the network, to the URL of a TwiML answer's ``<Stream>``."""
        comm: Any = await NetworkStream.open(url)
        return cls(comm=comm, call_sid=call_sid, stream_sid="MZ" + uuid.uuid4().hex,
                   account_sid=account_sid)  # fmt: skip

    @classmethod
    async def dial(
        cls, account_public_id: Any, *, call_sid: str | None = None, account_sid: str = ""
    ) -> CarrierSim:
        comm = WebsocketCommunicator(APP, f"/ws/v1/phone/twilio/{account_public_id}")
        connected, _ = await comm.connect(timeout=10)
        assert connected
        return cls(
            comm=comm,
            call_sid=call_sid or "CA" + uuid.uuid4().hex,
            stream_sid="MZ" + uuid.uuid4().hex,
            account_sid=account_sid or "AC" + uuid.uuid4().hex,
        )

    async def _send(self, event: str, **body: Any) -> None:
        self._seq += 1
        message = {"event": event, "sequenceNumber": str(self._seq), **body}
        if event not in ("connected",):
            message["streamSid"] = self.stream_sid
        await self.comm.send_to(text_data=json.dumps(message))

    async def connected(self) -> None:
        await self._send("connected", protocol="Call", version="1.0.0")

    async def start(
        self, token: str, *, media_format: dict[str, Any] | None = None, name: str = "token"
    ) -> None:
        """``start`` with the credential, then the real-time loops."""
        # Whatever the platform said before ``start`` (it must say nothing).
        while not await self.comm.receive_nothing(0.2):
            message = await self.comm.receive_output(1)
            self.sent_before_start.append(message)
        await self._send(
            "start",
            start={
                "accountSid": self.account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "mediaFormat": media_format
                or {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": {name: token},
            },
        )
        self._tasks = [
            asyncio.create_task(self._uplink(), name="sim-uplink"),
            asyncio.create_task(self._downlink(), name="sim-downlink"),
            asyncio.create_task(self._playback(), name="sim-playback"),
        ]

    def say(self, ulaw: bytes) -> None:
        """Queue the caller's words: they go up frame by frame, in real time."""
        for start in range(0, len(ulaw), ULAW_FRAME_BYTES):
            frame = ulaw[start : start + ULAW_FRAME_BYTES]
            self._speech.append(frame + b"\xff" * (ULAW_FRAME_BYTES - len(frame)))

    async def dtmf(self, digit: str) -> None:
        await self._send("dtmf", dtmf={"track": "inbound_track", "digit": digit})

    async def stop(self) -> None:
        await self._send("stop", stop={"accountSid": self.account_sid, "callSid": self.call_sid})

    async def _uplink(self) -> None:
        start = time.monotonic()
        index = 0
        while not self.closed.is_set():
            frame = self._speech.popleft() if self._speech else ULAW_SILENCE
            self._chunk += 1
            await self._send(
                "media",
                media={
                    "track": "inbound",
                    "chunk": str(self._chunk),
                    "timestamp": str(index * 20),
                    "payload": base64.b64encode(frame).decode(),
                },
            )
            index += 1
            await asyncio.sleep(max(0.0, start + index * FRAME - time.monotonic()))

    async def _downlink(self) -> None:
        while True:
            message = await self.comm.receive_output(3600)
            if message["type"] == "websocket.close":
                self.close_code = message.get("code", 1000)
                self.closed.set()
                return
            event = json.loads(message["text"])
            now = time.monotonic()
            self.received.append((now, event))
            kind = event.get("event")
            if kind == "media":
                self._buffer.append((now, base64.b64decode(event["media"]["payload"])))
            elif kind == "mark":
                self._buffer.append(str(event["mark"]["name"]))
            elif kind == "clear":
                self.clears.append(now)
                pending = [item for item in self._buffer if isinstance(item, str)]
                self._buffer.clear()
                for name in pending:  # flushed marks are echoed too
                    await self._echo(name, played=False)

    async def _echo(self, name: str, *, played: bool) -> None:
        self.marks_echoed.append((time.monotonic(), name, played))
        await self._send("mark", mark={"name": name})

    async def _playback(self) -> None:
        """One frame per 20 ms tick of the carrier's own clock. A tick this task reached
        late (the test's event loop was busy) is played in arrears, with what had arrived
        by its time: the simulated caller hears what a real carrier would have played."""
        start = time.monotonic()
        tick = 0
        while not self.closed.is_set():
            due = int((time.monotonic() - start) / FRAME) + 1
            while tick < due:
                at = start + tick * FRAME
                while self._buffer and isinstance(self._buffer[0], str):
                    await self._echo(str(self._buffer.popleft()), played=True)
                arrived = [i for i in self._buffer if isinstance(i, tuple) and i[0] <= at]
                self.buffer_depth.append(len(arrived))
                head = self._buffer[0] if self._buffer else None
                if isinstance(head, tuple) and head[0] <= at:
                    self._buffer.popleft()
                    self.played.append(Played(at, head[1]))
                tick += 1
            await asyncio.sleep(max(0.0, start + tick * FRAME - time.monotonic()))

    # --- what the tests read -------------------------------------------------------------

    def media(self) -> list[tuple[float, bytes]]:
        return [
            (at, base64.b64decode(event["media"]["payload"]))
            for at, event in self.received
            if event.get("event") == "media"
        ]

    def played_pcm(self) -> bytes:
        return ulaw_to_pcm16(b"".join(p.frame for p in self.played))

    async def hang_up(self, timeout: float = 10) -> None:
        """The caller hangs up: ``stop``, then the carrier closes the stream."""
        with contextlib.suppress(Exception):
            await self.stop()
        await self.close(timeout)

    async def close(self, timeout: float = 10) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.closed.wait(), timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        # Let the platform's consumer finish now (after its own close too), not at the
        # event loop's close, where a channel layer's pending receive can hold teardown.
        with contextlib.suppress(Exception):
            await self.comm.disconnect()
        self.closed.set()

    async def wait_closed(self, timeout: float = 15) -> int | None:
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code
