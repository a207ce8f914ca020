"""Load generator of bench/phone_bench.py: N phone calls (or N browser sessions) in real time.

Run by the orchestrator, not by hand; stdin/stdout as bench/bridge_loadgen.py: ``WARM``
after one warm-up call, waits for ``GO``, connects every call, ``READY <t0>`` (monotonic
seconds: frames start at t0, the measured window at t0 + warmup), ``SENT <seconds>`` once
the callers have stopped talking, waits for ``CLOSE``, hangs up, ``RESULT <json>``.

Phone (``--mode phone``): each call is a simulated carrier doing what Twilio does. The
signed voice webhook (HTTP POST, X-Twilio-Signature from the package's RequestValidator),
the TwiML's ``<Stream url>`` and its ``token`` ``<Parameter>``, then over a real WebSocket
``connected``, ``start`` and a 160-byte μ-law ``media`` frame every 20 ms on a fixed
schedule. The caller speaks a 440 Hz tone for ``--speech`` seconds, then is silent for
``--silence`` seconds, round and round; each call starts at its own point of that cycle.
Received ``media`` goes into a playback buffer that plays one frame per 20 ms tick of the
call's own clock; a ``mark`` is echoed once the frames before it have played, ``clear``
empties the buffer and echoes the marks in it (as Twilio does).

Browser (``--mode browser``): the same schedule on ``/ws/v1/live?token=``: 640-byte PCM16
16 kHz binary frames every 20 ms; the 24 kHz audio that comes back is played through a
simulated 100 ms jitter buffer (``playback.started`` sent when a reply starts to play).

Judged per caller turn that ends inside the window: the reply's first audio after the end
of the caller's speech (turn latency, the emulator's 500 ms end-of-speech wait included),
and whether its playback ran dry mid-reply (an underrun: an audible gap).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import random
import sys
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FRAME_S = 0.02
GROUPS = 10  # send phases within a 20 ms frame (one timer each, not one per call)
JITTER_BUFFER_S = 0.1  # the browser client's
PREROLL_S = 0.06  # phone: also judged as if the carrier held this much before playing
EARLY_TICKS = 10  # a reply's first 200 ms (where the resampler's first block lands)


def tone(rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.25 * 32767 * np.sin(2 * np.pi * 440.0 * t)).astype("<i2")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


@dataclass
class Caller:
    """One call or session: its schedule, what it sent, heard and played."""

    index: int
    cycle_phase: float
    ws: Any = None
    error: str | None = None
    speech_ends: list[float] = field(default_factory=list)
    arrivals: list[tuple[float, float]] = field(default_factory=list)  # (time, audio seconds)
    ticks: list[tuple[float, bool, int]] = field(default_factory=list)  # phone playback
    clears: list[float] = field(default_factory=list)
    bad_frames: int = 0
    was_speaking: bool = False
    last_sent: float = 0.0
    reader: asyncio.Task[None] | None = None
    # Phone only.
    call_sid: str = ""
    stream_sid: str = ""
    action_url: str = ""
    seq: int = 0
    buffer: deque[str | None] = field(default_factory=deque)  # None = a frame, str = a mark
    queued: int = 0
    # Browser only.
    reply_open: bool = False


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cycle = args.speech + args.silence
        self.speech_frames = round(args.speech / FRAME_S)
        self.tokens: list[str] = json.loads(args.tokens) if args.tokens else []
        self.lag_ms: list[float] = []
        self.window = (0.0, 0.0)
        self.background: set[asyncio.Task[None]] = set()
        if args.mode == "phone":
            from telephony.audio import pcm16_to_ulaw

            ulaw = pcm16_to_ulaw(tone(8000, args.speech).tobytes())
            self.speech = [
                base64.b64encode(ulaw[i : i + 160]).decode() for i in range(0, len(ulaw), 160)
            ]
            self.silence: Any = base64.b64encode(b"\xff" * 160).decode()
        else:
            pcm = tone(16000, args.speech).tobytes()
            self.speech = [pcm[i : i + 640] for i in range(0, len(pcm), 640)]
            self.silence = b"\x00" * 640

    # --- connecting ------------------------------------------------------------------

    async def open(self, caller: Caller, http: Any) -> None:
        import websockets

        if self.args.mode == "browser":
            url = f"{self.args.ws_url}/ws/v1/live?token={self.tokens[caller.index]}"
            caller.ws = await websockets.connect(url, compression=None, ping_interval=None)
            while True:
                event = json.loads(await caller.ws.recv())
                if event.get("type") == "session.started":
                    break
                if event.get("type") in ("error", "session.ended"):
                    raise RuntimeError(f"refused: {event}")
            caller.reader = asyncio.create_task(self.read_browser(caller))
            return
        caller.call_sid = "CA" + uuid.uuid4().hex
        caller.stream_sid = "MZ" + uuid.uuid4().hex
        url = f"{self.args.http_url}/phone/twilio/{self.args.account}/voice"
        answer = await self.webhook(http, caller, url)
        root = ET.fromstring(answer)  # noqa: S314 (our own server's answer)
        stream = root.find("./Connect/Stream")
        if stream is None:
            raise RuntimeError(f"no stream in the TwiML: {answer[:200]}")
        # As Twilio: every <Parameter> goes to ``start.customParameters``, and the
        # <Connect action> URL is asked once the stream has ended.
        params = {str(p.get("name")): str(p.get("value")) for p in stream.iter("Parameter")}
        connect = root.find("./Connect")
        caller.action_url = str(connect.get("action") or "") if connect is not None else ""
        caller.ws = await websockets.connect(
            str(stream.get("url")), compression=None, ping_interval=None
        )
        await self.carrier_send(caller, "connected", protocol="Call", version="1.0.0")
        start = {
            "accountSid": self.args.account_sid,
            "streamSid": caller.stream_sid,
            "callSid": caller.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": params,
        }
        await self.carrier_send(caller, "start", start=start)
        caller.reader = asyncio.create_task(self.read_phone(caller))

    async def webhook(self, http: Any, caller: Caller, url: str) -> str:
        """A signed carrier request to ``url`` about this call; the TwiML answer."""
        from twilio.request_validator import RequestValidator

        name = "voice" if url.split("?")[0].endswith("/voice") else "stream-ended"
        params = {
            "CallSid": caller.call_sid,
            "AccountSid": self.args.account_sid,
            "From": f"+1415555{caller.index % 10000:04d}",
            "To": self.args.number,
            "Direction": "inbound",
            "CallStatus": "in-progress" if name != "voice" else "ringing",
        }
        signature = RequestValidator(self.args.auth_token).compute_signature(url, params)
        async with http.post(url, data=params, headers={"X-Twilio-Signature": signature}) as r:
            text: str = await r.text()
            if r.status != 200:
                raise RuntimeError(f"{name} webhook: HTTP {r.status}: {text[:200]}")
            return text

    async def carrier_send(self, caller: Caller, event: str, **body: Any) -> None:
        caller.seq += 1
        message = {"event": event, "sequenceNumber": str(caller.seq), **body}
        if event != "connected":
            message["streamSid"] = caller.stream_sid
        await caller.ws.send(json.dumps(message))

    # --- receiving -------------------------------------------------------------------

    async def read_phone(self, caller: Caller) -> None:
        loop = asyncio.get_running_loop()
        async for message in caller.ws:
            now = loop.time()
            if isinstance(message, str) and message.startswith('{"event":"media"'):
                if not caller.arrivals:  # check one frame per call: 20 ms of 8 kHz μ-law
                    payload = json.loads(message)["media"]["payload"]
                    caller.bad_frames += len(base64.b64decode(payload)) != 160
                caller.arrivals.append((now, FRAME_S))
                caller.buffer.append(None)
                caller.queued += 1
                continue
            event = json.loads(message)
            kind = event.get("event")
            if kind == "mark":
                caller.buffer.append(str(event["mark"]["name"]))
            elif kind == "clear":
                caller.clears.append(now)
                marks = [item for item in caller.buffer if item is not None]
                caller.buffer.clear()
                caller.queued = 0
                for name in marks:
                    await self.carrier_send(caller, "mark", mark={"name": name})

    def report_playback(self, caller: Caller) -> None:
        """The reply's first audio leaves the jitter buffer: ``playback.started``."""
        from voice_client.protocol import playback_started_message

        task = asyncio.get_running_loop().create_task(caller.ws.send(playback_started_message()))
        self.background.add(task)
        task.add_done_callback(self.report_sent)

    def report_sent(self, task: asyncio.Task[None]) -> None:
        self.background.discard(task)
        if not task.cancelled():
            task.exception()  # a session that has just closed: nothing to report to

    async def read_browser(self, caller: Caller) -> None:
        loop = asyncio.get_running_loop()
        async for message in caller.ws:
            now = loop.time()
            if isinstance(message, bytes):
                caller.arrivals.append((now, len(message) / 48_000))  # 24 kHz PCM16
                if not caller.reply_open:
                    caller.reply_open = True
                    loop.call_later(JITTER_BUFFER_S, self.report_playback, caller)
                continue
            kind = json.loads(message).get("type")
            if kind in ("turn_complete", "interrupted"):
                caller.reply_open = False
                if kind == "interrupted":
                    caller.clears.append(now)

    # --- the 20 ms ticks ----------------------------------------------------------------

    async def tick(self, caller: Caller, k: int, now: float) -> None:
        pos = (k * FRAME_S + caller.cycle_phase) % self.cycle
        speaking = pos < self.args.speech - 1e-9
        if caller.was_speaking and not speaking:
            caller.speech_ends.append(caller.last_sent)
        caller.was_speaking = speaking
        frame = (
            self.speech[min(int(pos / FRAME_S), self.speech_frames - 1)]
            if speaking
            else self.silence
        )
        if self.args.mode == "browser":
            await caller.ws.send(frame)
            caller.last_sent = now
            return
        # The carrier's playback: marks whose audio has played, then this tick's frame.
        while caller.buffer and caller.buffer[0] is not None:
            await self.carrier_send(caller, "mark", mark={"name": caller.buffer.popleft()})
        depth = caller.queued
        if depth:
            caller.buffer.popleft()
            caller.queued -= 1
        caller.ticks.append((now, depth > 0, depth))
        caller.seq += 1
        await caller.ws.send(
            f'{{"event":"media","sequenceNumber":"{caller.seq}","media":{{"track":"inbound",'
            f'"chunk":"{k + 1}","timestamp":"{k * 20}","payload":"{frame}"}},'
            f'"streamSid":"{caller.stream_sid}"}}'
        )
        caller.last_sent = now

    async def ticker(self, callers: list[Caller], t0: float, offset: float, frames: int) -> None:
        loop = asyncio.get_running_loop()
        for k in range(frames):
            due = t0 + offset + k * FRAME_S  # a fixed schedule: lateness never accumulates
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            if self.window[0] <= due < self.window[1]:
                self.lag_ms.append((now - due) * 1000)
            for caller in callers:
                if caller.error is None:
                    try:
                        await self.tick(caller, k, now)
                    except Exception as exc:
                        caller.error = f"send: {type(exc).__name__}: {exc}"[:200]

    # --- judging -----------------------------------------------------------------------

    def judge(self, caller: Caller, out: dict[str, Any]) -> None:
        """Per caller turn ending in the window: latency, and the reply's playback."""
        w0, w1 = self.window
        reply_ticks = underrun_ticks = preroll_underruns = 0.0
        for end in caller.speech_ends:
            if not w0 <= end < w1:
                continue
            out["turns"] += 1
            stop = end + self.args.silence  # the caller speaks again here
            got = [(t, d) for t, d in caller.arrivals if end < t < stop]
            if not got:
                out["unanswered"] += 1
                continue
            out["latency_ms"].append((got[0][0] - end) * 1000)
            out["gap_ms"].extend((b[0] - a[0]) * 1000 for a, b in itertools.pairwise(got))
            if self.args.mode == "browser":
                gaps, ticks, depths = buffered(got, JITTER_BUFFER_S)
                underrun_ticks += gaps
                reply_ticks += ticks
                out["depth"].extend(depths)
                continue
            # The carrier plays a frame per tick of its own clock from the first one on.
            played = [(t, p, d) for t, p, d in caller.ticks if end < t < stop + 1.0]
            first = next(i for i, (_, p, _) in enumerate(played) if p)
            last = max(i for i, (_, p, _) in enumerate(played) if p)
            span = played[first : last + 1]
            reply_ticks += len(span)
            underrun_ticks += sum(1 for _, p, _ in span if not p)
            out["underrun_early"] += sum(1 for _, p, _ in span[:EARLY_TICKS] if not p)
            out["depth"].extend(d for _, p, d in span)
            # What a carrier holding PREROLL_S of audio before it starts playing would hear.
            preroll_underruns += buffered(got, PREROLL_S)[0]
        share = underrun_ticks / reply_ticks if reply_ticks else 0.0
        out["reply_ticks"] += reply_ticks
        out["underrun_ticks"] += underrun_ticks
        out["worst_underrun"] = max(out["worst_underrun"], share)
        out["calls_underrun"] += share >= 0.01
        out["preroll_underrun_ticks"] += preroll_underruns
        out["calls_underrun_preroll"] += (
            bool(reply_ticks) and preroll_underruns / reply_ticks >= 0.01
        )
        out["clears"] += sum(1 for at in caller.clears if w0 <= at < w1 + self.args.silence)


def buffered(got: list[tuple[float, float]], preroll: float) -> tuple[float, float, list[int]]:
    """A reply played through a jitter buffer: it starts ``preroll`` seconds after the first
    audio arrives, then plays at real time; audio arriving after its turn to play leaves a
    gap (and pushes the rest back). Returns the gaps and the reply in 20 ms ticks, and the
    buffer's depth (ticks) at each arrival."""
    clock = got[0][0] + preroll
    gaps = ticks = 0.0
    depths: list[int] = []
    for at, seconds in got:
        if at > clock:
            gaps += (at - clock) / FRAME_S
            clock = at
        depths.append(round((clock - at) / FRAME_S))
        clock += seconds
        ticks += seconds / FRAME_S
    return gaps, ticks, depths


def summary(load: Load, callers: list[Caller]) -> dict[str, Any]:
    acc: dict[str, Any] = {
        "turns": 0,
        "unanswered": 0,
        "latency_ms": [],
        "gap_ms": [],
        "depth": [],
        "reply_ticks": 0.0,
        "underrun_ticks": 0.0,
        "underrun_early": 0,
        "preroll_underrun_ticks": 0.0,
        "calls_underrun_preroll": 0,
        "worst_underrun": 0.0,
        "calls_underrun": 0,
        "clears": 0,
    }
    ok = [c for c in callers if c.error is None]
    for caller in ok:
        load.judge(caller, acc)
    q = {f"{name}{p}": pct(acc[name], p) for name in ("latency_ms", "gap_ms") for p in (50, 95, 99)}
    return {
        **{k: v for k, v in acc.items() if not isinstance(v, list)},
        **q,
        "gap_max_ms": max(acc["gap_ms"], default=None),
        "depth50": pct(acc["depth"], 50),
        "depth_max": max(acc["depth"], default=None),
        "lag_ms99": pct(load.lag_ms, 99),
        "lag_max_ms": max(load.lag_ms, default=None),
        "bad_frames": sum(c.bad_frames for c in callers),
        "calls": len(callers),
        "errors": [c.error for c in callers if c.error][:5],
        "error_count": len(callers) - len(ok),
    }


async def connect_all(load: Load, callers: list[Caller], http: Any) -> None:
    async def one(caller: Caller) -> None:
        await asyncio.sleep(caller.index * load.args.stagger)
        try:
            async with asyncio.timeout(60):
                await load.open(caller, http)
        except Exception as exc:
            caller.error = f"connect: {type(exc).__name__}: {exc}"[:200]

    await asyncio.gather(*(one(c) for c in callers))


async def hang_up(load: Load, caller: Caller, http: Any) -> None:
    with contextlib.suppress(Exception):
        if load.args.mode == "phone":
            stop = {"accountSid": load.args.account_sid, "callSid": caller.call_sid}
            await load.carrier_send(caller, "stop", stop=stop)
        else:
            from voice_client.protocol import close_message

            await caller.ws.send(close_message())
        async with asyncio.timeout(5):
            await caller.ws.wait_closed()
    with contextlib.suppress(Exception):
        await caller.ws.close()
    if caller.reader is not None:
        caller.reader.cancel()
    if load.args.mode == "phone":  # as Twilio does: the <Connect action> once it is over
        with contextlib.suppress(Exception):
            await load.webhook(http, caller, caller.action_url)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    load = Load(args)
    loop = asyncio.get_running_loop()
    rng = random.Random(args.calls)
    async with aiohttp.ClientSession() as http:
        # A warm-up call: lazy imports and first-use caches are paid before measuring.
        warm = Caller(index=0, cycle_phase=0.0)
        await connect_all(load, [warm], http)
        if warm.error is not None:
            raise RuntimeError(warm.error)
        await load.ticker([warm], loop.time(), 0.0, 50)
        await hang_up(load, warm, http)
        print("WARM", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)

        callers = [
            Caller(index=i + 1, cycle_phase=rng.uniform(0, load.cycle)) for i in range(args.calls)
        ]
        await connect_all(load, callers, http)
        t0 = loop.time() + 0.5
        load.window = (t0 + args.warmup, t0 + args.warmup + args.seconds)
        print(f"READY {t0:.6f}", flush=True)
        # Talk on for a cycle after the window: the turns ending in it get their replies.
        frames = round((args.warmup + args.seconds + load.cycle) / FRAME_S)
        live = [c for c in callers if c.error is None]
        groups = [live[g::GROUPS] for g in range(GROUPS)]
        await asyncio.gather(
            *(load.ticker(grp, t0, g * FRAME_S / GROUPS, frames) for g, grp in enumerate(groups))
        )
        print(f"SENT {frames * FRAME_S:.3f}", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        async with asyncio.timeout(60):
            await asyncio.gather(*(hang_up(load, c, http) for c in callers if c.ws is not None))
    return summary(load, callers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["phone", "browser"], required=True)
    parser.add_argument("--http-url", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--speech", type=float, default=2.0)
    parser.add_argument("--silence", type=float, default=3.0)
    parser.add_argument("--stagger", type=float, default=0.02, help="seconds between connects")
    parser.add_argument("--account", default="", help="carrier account public id (phone)")
    parser.add_argument("--account-sid", default="")
    parser.add_argument("--auth-token", default="")
    parser.add_argument("--number", default="")
    parser.add_argument("--tokens", default="", help="JSON list of client tokens (browser)")
    args = parser.parse_args()
    args.ws_url = "ws" + args.http_url.removeprefix("http")
    args.tokens_needed = args.calls + 1
    print("RESULT " + json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
