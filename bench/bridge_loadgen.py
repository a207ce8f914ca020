"""Load generator of bench/bridge_bench.py: N audio sessions on one path, per-frame timing.

Run by the orchestrator, not by hand. It talks over stdin/stdout: it prints `WARM` after
one warm-up session (so the server's lazy imports are not counted as per-session memory),
waits for `GO`, connects every session, prints `READY <t0>` (CLOCK_MONOTONIC seconds:
frames start at t0, the measured window at t0 + warmup), then `RESULT <json>` at the end.

Each frame is 3,200 bytes (100 ms of 16 kHz PCM16): bytes 0-7 the sequence number, 8-15
the send time (CLOCK_MONOTONIC ns, taken just before the send call), then noise; the
emulator (`--echo-frames`) echoes it with its receipt time at bytes 16-23. So per frame:
up = emulator receipt - client send, down = client receipt - emulator receipt. The clock
is system-wide, so the three processes agree on it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from voice_client.protocol import close_message, parse_event
from voice_platform.live_emulator.echo import read_stamp

FRAME_S = 0.1
FRAME_BYTES = 3_200
AUDIO_MIME = "audio/pcm;rate=16000"
_HEAD = struct.Struct("<QQ")
# Incompressible payload: deflate on the SDK leg must not get an easy ride on zeros.
_NOISE = random.Random(7).randbytes(FRAME_BYTES)


def make_frame(seq: int) -> bytes:
    return _HEAD.pack(seq, time.monotonic_ns()) + _NOISE[_HEAD.size :]


@dataclass
class Stream:
    """One session's counters; times in seconds or ns as named."""

    connect_s: float | None = None
    sent: dict[int, bool] = field(default_factory=dict)  # seq -> inside the window
    up_ms: list[float] = field(default_factory=list)
    down_ms: list[float] = field(default_factory=list)
    rtt_ms: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)
    measured: int = 0
    lost: int = 0
    error: str | None = None

    def on_echo(self, data: bytes) -> None:
        now = time.monotonic_ns()
        emulator = read_stamp(data)
        if emulator is None:
            return
        seq, sent_ns = _HEAD.unpack_from(data)
        in_window = self.sent.pop(seq, None)
        if in_window is None:
            return
        if in_window:
            self.up_ms.append((emulator - sent_ns) / 1e6)
            self.down_ms.append((now - emulator) / 1e6)
            self.rtt_ms.append((now - sent_ns) / 1e6)


class Transport:
    """One session on some path: send a frame, receive echoes via `stream.on_echo`."""

    async def open(self, index: int) -> None:
        raise NotImplementedError

    async def send(self, frame: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class SdkTransport(Transport):
    """Path (a): the google-genai SDK straight to the emulator."""

    def __init__(self, client: Any, model: str, stream: Stream) -> None:
        self.client, self.model, self.stream = client, model, stream
        self.stack = contextlib.AsyncExitStack()
        self.receiver: asyncio.Task[None] | None = None
        self.session: Any = None

    async def open(self, index: int) -> None:
        from google.genai import types

        config = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO])
        self.session = await self.stack.enter_async_context(
            self.client.aio.live.connect(model=self.model, config=config)
        )
        self.receiver = asyncio.create_task(self._receive())

    async def _receive(self) -> None:
        while True:
            async for message in self.session.receive():
                content = message.server_content
                if content is None or content.model_turn is None:
                    continue
                for part in content.model_turn.parts or []:
                    if part.inline_data is not None and part.inline_data.data:
                        self.stream.on_echo(part.inline_data.data)

    async def send(self, frame: bytes) -> None:
        from google.genai import types

        await self.session.send_realtime_input(audio=types.Blob(data=frame, mime_type=AUDIO_MIME))

    async def close(self) -> None:
        if self.receiver is not None:
            self.receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.receiver
        with contextlib.suppress(Exception):
            await self.stack.aclose()


class WsTransport(Transport):
    """Paths (b) and (c): a plain WebSocket client speaking the client protocol."""

    def __init__(self, url: str, stream: Stream, *, say_close: bool) -> None:
        self.url, self.stream, self.say_close = url, stream, say_close
        self.ws: Any = None
        self.receiver: asyncio.Task[None] | None = None
        self.started = asyncio.Event()

    async def open(self, index: int) -> None:
        import websockets

        self.ws = await websockets.connect(
            self.url, compression=None, ping_interval=None, open_timeout=30
        )
        self.receiver = asyncio.create_task(self._receive())
        async with asyncio.timeout(30):
            await self.started.wait()

    async def _receive(self) -> None:
        async for message in self.ws:
            if isinstance(message, bytes):
                self.stream.on_echo(message)
            elif parse_event(message).type == "session.started":
                self.started.set()
        self.started.set()  # closed: let open() notice instead of waiting out its timeout

    async def send(self, frame: bytes) -> None:
        await self.ws.send(frame)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.say_close:
                # End the platform session for good (no resume window left behind).
                await self.ws.send(close_message())
                async with asyncio.timeout(5):
                    await self.ws.wait_closed()
            await self.ws.close()
        if self.receiver is not None:
            self.receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.receiver


def make_transports(args: argparse.Namespace, count: int) -> tuple[list[Transport], list[Stream]]:
    streams = [Stream() for _ in range(count)]
    transports: list[Transport] = []
    if args.path == "direct":
        import ssl

        from google import genai
        from google.genai import types

        ctx = ssl.create_default_context(cafile=args.cert)
        client = genai.Client(
            api_key="bench",
            http_options=types.HttpOptions(
                base_url=args.url,
                api_version="v1beta",
                async_client_args={"ssl": ctx, "verify": ctx},
                client_args={"verify": ctx},
            ),
        )
        args.client = client  # kept referenced for the whole run
        transports = [SdkTransport(client, args.model, s) for s in streams]
    else:
        tokens: list[str] = json.loads(args.tokens) if args.tokens else []
        for index, stream in enumerate(streams):
            url = args.url
            if tokens:
                url = f"{url}?token={tokens[index]}"
            transports.append(WsTransport(url, stream, say_close=bool(tokens)))
    return transports, streams


async def open_timed(transport: Transport, stream: Stream, index: int, delay: float) -> None:
    await asyncio.sleep(delay)
    start = time.monotonic()
    try:
        await transport.open(index)
    except Exception as exc:
        stream.error = f"connect: {type(exc).__name__}: {exc}"[:200]
        return
    stream.connect_s = time.monotonic() - start


async def drive(
    transport: Transport,
    stream: Stream,
    t0: float,
    phase: float,
    frames: int,
    window: tuple[float, float],
) -> None:
    loop = asyncio.get_running_loop()
    for seq in range(frames):
        due = t0 + phase + seq * FRAME_S  # fixed schedule: lateness never accumulates
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        now = loop.time()
        in_window = window[0] <= due < window[1]
        if in_window:
            stream.lag_ms.append((now - due) * 1000)
            stream.measured += 1
        stream.sent[seq] = in_window
        try:
            await transport.send(make_frame(seq))
        except Exception as exc:
            stream.error = f"send: {type(exc).__name__}: {exc}"[:200]
            return


async def warm_up(args: argparse.Namespace) -> None:
    """One short session, so lazy imports and first-use caches are paid before measuring."""
    transports, streams = make_transports(args, 1)
    await open_timed(transports[0], streams[0], 0, 0.0)
    if streams[0].error is None:
        for seq in range(5):
            await transports[0].send(make_frame(seq))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
    await transports[0].close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.path != "direct" and args.tokens:
        tokens = json.loads(args.tokens)
        args.tokens = json.dumps(tokens[:1])
        await warm_up(args)
        args.tokens = json.dumps(tokens[1:])
    else:
        await warm_up(args)
    print("WARM", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    transports, streams = make_transports(args, args.sessions)
    stagger = args.connect_stagger
    async with asyncio.timeout(60 + args.sessions * stagger * 4):
        await asyncio.gather(
            *(
                open_timed(t, s, i, i * stagger)
                for i, (t, s) in enumerate(zip(transports, streams, strict=True))
            )
        )
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.5
    print(f"READY {t0:.6f}", flush=True)
    window = (t0 + args.warmup, t0 + args.warmup + args.seconds)
    frames = round((args.warmup + args.seconds) / FRAME_S)
    rng = random.Random(args.sessions)
    live = [(t, s) for t, s in zip(transports, streams, strict=True) if s.error is None]
    async with asyncio.timeout(args.warmup + args.seconds + 30):
        await asyncio.gather(
            *(drive(t, s, t0, rng.uniform(0, FRAME_S), frames, window) for t, s in live)
        )
        await asyncio.sleep(1.0)  # echoes still in flight
    for stream in streams:
        stream.lost = sum(1 for in_window in stream.sent.values() if in_window)
    async with asyncio.timeout(30):
        await asyncio.gather(*(t.close() for t in transports))
    return summarise(streams)


def summarise(streams: list[Stream]) -> dict[str, Any]:
    ok = [s for s in streams if s.error is None]
    # Behind real time: the client could not send on schedule, or the stream's frames
    # typically waited more than a frame interval (a standing queue), or frames were lost.
    behind = sum(
        1
        for s in ok
        if max(s.lag_ms, default=0.0) > FRAME_S * 1000
        or (s.rtt_ms and sorted(s.rtt_ms)[len(s.rtt_ms) // 2] > FRAME_S * 1000)
        or s.lost
    )
    return {
        "up_ms": [v for s in ok for v in s.up_ms],
        "down_ms": [v for s in ok for v in s.down_ms],
        "lag_ms": [v for s in ok for v in s.lag_ms],
        "connect_ms": [s.connect_s * 1000 for s in ok if s.connect_s is not None],
        "measured": sum(s.measured for s in ok),
        "lost": sum(s.lost for s in ok),
        "behind": behind,
        "errors": [s.error for s in streams if s.error][:5],
        "error_count": sum(1 for s in streams if s.error),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--path", choices=["direct", "bare", "platform"], required=True)
    parser.add_argument("--url", required=True, help="emulator base URL or ws:// URL")
    parser.add_argument("--cert", default="")
    parser.add_argument("--model", default="gemini-2.5-flash-native-audio-preview-12-2025")
    parser.add_argument("--tokens", default="", help="JSON list: warm-up token, then one each")
    parser.add_argument("--sessions", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connect-stagger", type=float, default=0.02)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
