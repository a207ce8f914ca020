"""Soak: many live sessions for minutes against real processes, then look for leaks.

    .venv/bin/python -m bench.soak --sessions 100 --minutes 10      # make soak
    .venv/bin/python -m bench.soak --sessions 10 --minutes 0.5      # the CI form

Processes: the Live emulator (bench/soak_emulator.py: pace 1.0, a random fault on about a
quarter of the connections, a goAway on every connection that lives 105 s, a few stalled
turns), a Celery worker on a queue of its own, and one Daphne running the platform
(bench/soak_asgi.py: the platform plus a read-only probe of the server's tasks). The
platform uses its own database, `voice_platform_soak` (created and migrated here), and the
given Redis.

Load: `--sessions` users at once, each opening session after session (30-150 s each, TEXT
and AUDIO agents alternately) until `--minutes` have passed. In a session the user takes
turns: text, a tool call (`get_current_time`, run by the worker), speech streamed at real
time, and barge-ins (speech while the model answers). One session in ten ends with the
client vanishing (TCP abort) instead of `close`, so it ends when its resume window passes.

Checks, afterwards (exit status 1 when one fails):
- no leaked task: the server's asyncio tasks after the run are no more than before it, none
  of a session's (`bridge-*`, `live-*`);
- no leaked socket or file descriptor: no socket to the emulator or from a client left in
  the server process, and every other kind of descriptor no more than before; database and
  Redis connections are pools that keep idle connections: at most one per thread, and at
  most three Redis connections per user (a leak per session would pass that many times);
- RSS flat: the mean of the last minute within 10 % of the first minute's of the steady
  state (once every user's first session has ended: 160 s in; from the ramp, and a quarter
  of the run, when the run is too short for that); the minute after the ramp is reported too;
- every session of the run `ended` or `failed`, every tool call in a final state.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.bridge_bench import DAPHNE_FLAGS, free_port, rss_kib, stop, wait_for_port
from bench.bridge_setup import ensure_database
from voice_client import audio, protocol

ROOT = Path(__file__).resolve().parents[1]
TENANT_SLUG = "soak"
SESSION_SECONDS = (30.0, 150.0)  # how long each session of a user lasts (uniform)
TIMEZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC")
TURN_WEIGHTS = {"text": 35, "tool": 20, "speech": 25, "barge_in": 20}
TURN_TIMEOUT = 60.0  # a turn across a black hole noticed only by the idle timeout (45 s)
RESUME_WINDOW = 5  # seconds: vanished clients' sessions end soon after the reaper's sweep
REAPER_SWEEP = 30.0  # sessions/reaper.py INTERVAL
FINAL_STATUSES = ("ended", "failed")
TOOL_FINAL = ("rejected", "succeeded", "failed", "timeout", "cancelled")


def default_database_url() -> str:
    """`voice_platform_soak` on the server of DATABASE_URL (or local PostgreSQL)."""
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/voice_platform")
    return urlunsplit(urlsplit(base)._replace(path="/voice_platform_soak"))


# --- what the server process holds ------------------------------------------------------------


def tcp_sockets() -> dict[int, tuple[int, int, str]]:
    """inode -> (local port, remote port, state) for every TCP socket on this host."""
    table: dict[int, tuple[int, int, str]] = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(name).read_text().splitlines()[1:]:
                parts = line.split()
                local, remote, state, inode = parts[1], parts[2], parts[3], int(parts[9])
                table[inode] = (
                    int(local.rsplit(":", 1)[1], 16),
                    int(remote.rsplit(":", 1)[1], 16),
                    state,
                )
    return table


def fd_census(pid: int, ports: dict[str, int]) -> dict[str, int]:
    """The server's open descriptors by kind: its sockets by peer, then pipes and files."""
    table = tcp_sockets()
    kinds: Counter[str] = Counter()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue  # closed while we looked
        match = re.fullmatch(r"socket:\[(\d+)\]", link)
        if match is None:
            kinds[
                "pipe"
                if link.startswith("pipe:")
                else link.split("[")[0]
                if link.startswith("anon_inode:")
                else "file"
            ] += 1
            continue
        entry = table.get(int(match.group(1)))
        if entry is None:
            kinds["unix_socket"] += 1
            continue
        local, remote, state = entry
        if local == ports["daphne"]:
            kinds["listen" if state == "0A" else "client"] += 1
        elif remote == ports["emulator"]:
            kinds["upstream"] += 1
        elif remote == ports["postgres"]:
            kinds["postgres"] += 1
        elif remote == ports["redis"]:
            kinds["redis"] += 1
        else:
            kinds["tcp_other"] += 1
    return dict(kinds)


def probe(port: int, name: str = "state") -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/__soak__/{name}"
    with urllib.request.urlopen(url, timeout=60) as response:
        state: dict[str, Any] = json.load(response)
    return state


def snapshot(pid: int, ports: dict[str, int]) -> dict[str, Any]:
    state = probe(ports["daphne"])
    time.sleep(0.3)  # the probe's own connection gone
    return {
        **state,
        "fds": fd_census(pid, ports),
        "fd_total": len(list(Path(f"/proc/{pid}/fd").iterdir())),
        "os_threads": len(list(Path(f"/proc/{pid}/task").iterdir())),
        "rss_kib": rss_kib(pid),
    }


# --- the platform's data -------------------------------------------------------------------


def platform_setup() -> dict[str, int]:
    """The soak tenant, a TEXT and an AUDIO agent, both allowed `get_current_time`."""
    import django

    django.setup()
    from django.conf import settings

    from agents.models import Agent
    from agents.services import agent_create
    from tools.models import AgentTool
    from tools.services import agent_tool_create, tool_sync_registry
    from voice_platform.tenancy.models import Tenant
    from voice_platform.tenancy.scope import tenant_scope
    from voice_platform.tenancy.services import tenant_create

    tool_sync_registry()
    tenant = Tenant.objects.filter(slug=TENANT_SLUG).first() or tenant_create(
        name="Soak", slug=TENANT_SLUG, max_concurrent_sessions=100_000
    )
    agents: dict[str, int] = {}
    with tenant_scope(tenant.pk):
        for modality in ("TEXT", "AUDIO"):
            slug = f"soak-{modality.lower()}"
            agent = Agent.objects.filter(slug=slug).first() or agent_create(
                tenant=tenant,
                name=f"Soak {modality}",
                slug=slug,
                model=settings.LIVE_MODELS[0],
                response_modality=modality,
                input_transcription=modality == "AUDIO",
                output_transcription=modality == "AUDIO",
                max_session_seconds=3600,
                resume_window_seconds=RESUME_WINDOW,
            )
            if not AgentTool.objects.filter(agent=agent).exists():
                agent_tool_create(tenant=tenant, agent=agent, tool_name="get_current_time")
            agents[modality] = agent.pk
    return agents


def issue_token(agent_id: int, end_user_id: str) -> str:
    from django.db import close_old_connections

    from agents.models import Agent
    from sessions.tokens import client_token_issue
    from voice_platform.tenancy.models import Tenant
    from voice_platform.tenancy.scope import tenant_scope

    close_old_connections()
    tenant = Tenant.objects.get(slug=TENANT_SLUG)
    with tenant_scope(tenant.pk):
        agent = Agent.objects.get(pk=agent_id)
        return client_token_issue(tenant=tenant, agent=agent, end_user_id=end_user_id).raw


def run_state(prefix: str) -> dict[str, Any]:
    """Sessions and tool calls of this run (its end users start with `prefix`)."""
    from django.db import close_old_connections

    from sessions.models import VoiceSession
    from tools.models import ToolCallRecord

    close_old_connections()
    # unscoped: a read over the soak tenant's rows from a maintenance script, no request.
    sessions = VoiceSession.unscoped.filter(end_user_id__startswith=prefix)
    calls = ToolCallRecord.unscoped.filter(session__in=sessions)
    causes: Counter[str] = Counter()
    turns = reconnects = 0
    for session in sessions.only("turns", "reconnects", "reconnect_log"):
        turns += session.turns
        reconnects += session.reconnects
        causes.update(entry.get("cause", "?") for entry in session.reconnect_log)
    return {
        "sessions": sessions.count(),
        "statuses": dict(Counter(sessions.values_list("status", flat=True))),
        "end_reasons": dict(Counter(sessions.values_list("end_reason", flat=True))),
        "turns": turns,
        "reconnects": reconnects,
        "reconnect_causes": dict(causes),
        "tool_calls": calls.count(),
        "tool_statuses": dict(Counter(calls.values_list("status", flat=True))),
    }


# --- users -------------------------------------------------------------------------------------


def tone(ms: int, freq: float, amplitude: int = 8000) -> bytes:
    return audio.float32_to_pcm16(audio.sine(freq, audio.INPUT_RATE, ms / 1000, amplitude / 32767))


SILENCE = bytes(audio.frame_bytes())  # 100 ms
TONES = {pitch: tone(100, pitch) for pitch in (300, 440, 600, 880)}


@dataclass
class Totals:
    sessions_opened: int = 0
    sessions_closed: int = 0
    sessions_vanished: int = 0
    sessions_ended_early: int = 0
    connect_errors: int = 0
    turns: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    end_reasons: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


class Conversation:
    """One WebSocket session: everything received, counted; turns awaited by time."""

    def __init__(self, ws: Any, totals: Totals) -> None:
        self.ws, self.totals = ws, totals
        self.turn_times: list[float] = []
        self.reply_times: list[float] = []  # model output: audio, text or transcript
        self.changed = asyncio.Event()
        self.started: protocol.SessionStarted | None = None
        self.closed = False
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                now = time.monotonic()
                if isinstance(message, bytes):
                    self.reply_times.append(now)
                else:
                    event = protocol.parse_event(message)
                    kind = event.type
                    self.totals.events[kind] += 1
                    if isinstance(event, protocol.SessionStarted):
                        self.started = event
                    elif kind == "turn_complete":
                        self.turn_times.append(now)
                    elif kind in ("text", "transcript.output"):
                        self.reply_times.append(now)
                    elif isinstance(event, protocol.SessionEnded):
                        self.totals.end_reasons[event.reason or "?"] += 1
                    elif isinstance(event, protocol.ErrorEvent):
                        self.totals.errors[event.code or "?"] += 1
                self.changed.set()
        except Exception as exc:  # a vanished or reset connection ends the reading
            self.totals.errors[f"client: {type(exc).__name__}"] += 1
        finally:
            self.closed = True
            self.changed.set()

    async def until(self, done: Any, limit: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                while not done():
                    if self.closed:
                        return bool(done())
                    self.changed.clear()
                    await self.changed.wait()
                return True
        return False

    async def turn_after(self, moment: float, deadline: float) -> bool:
        """A `turn_complete` after `moment`; waits at most a turn's time, and past the
        run's deadline only briefly."""
        limit = min(TURN_TIMEOUT, max(5.0, deadline + 10 - time.monotonic()))
        return await self.until(lambda: any(t > moment for t in self.turn_times), limit)

    async def speak(self, pitch: int, frames: int) -> float:
        """Speech at real time, then the pause that ends the turn. Returns when the speech
        ended: a quick reply (text) completes during the pause."""
        for _ in range(frames):
            await self.ws.send(TONES[pitch])
            await asyncio.sleep(0.1)
        ended = time.monotonic()
        for _ in range(8):
            await self.ws.send(SILENCE)
            await asyncio.sleep(0.1)
        return ended


async def take_turn(
    conv: Conversation, kind: str, rng: random.Random, n: int, deadline: float
) -> bool:
    moment = time.monotonic()
    if kind == "text":
        await conv.ws.send(protocol.text_message(f"soak turn {n}"))
    elif kind == "tool":
        zone = rng.choice(TIMEZONES)
        line = 'call get_current_time {"timezone": "%s"}' % zone  # noqa: UP031 (JSON braces)
        await conv.ws.send(protocol.text_message(line))
    elif kind == "speech":
        moment = await conv.speak(rng.choice((300, 440, 600)), rng.randint(5, 9))
    else:  # barge-in: speak while the model answers a long text turn
        asked = time.monotonic()
        long = "please answer with a long sentence so that I can interrupt you " + str(n)
        await conv.ws.send(protocol.text_message(long))
        await conv.until(lambda: any(t > asked for t in conv.reply_times), 15)
        # The interrupted turn completes as the speech starts; the answer comes after it.
        moment = await conv.speak(880, rng.randint(5, 8))
    return await conv.turn_after(moment, deadline)


async def user(
    slot: int, args: argparse.Namespace, ctx: dict[str, Any], start: float, deadline: float
) -> None:
    rng = random.Random(args.seed * 100_003 + slot)
    totals: Totals = ctx["totals"]
    modality = "TEXT" if slot % 2 else "AUDIO"
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    count = 0
    while deadline - time.monotonic() > 5:
        count += 1
        end_user = f"{ctx['prefix']}{slot}-{count}"
        token = await asyncio.to_thread(issue_token, ctx["agents"][modality], end_user)
        import websockets

        try:
            ws = await websockets.connect(
                f"ws://127.0.0.1:{ctx['port']}/ws/v1/live?token={token}",
                compression=None,
                open_timeout=30,
                max_size=2**22,
            )
        except Exception as exc:
            totals.connect_errors += 1
            totals.errors[f"connect: {type(exc).__name__}"] += 1
            await asyncio.sleep(1)
            continue
        conv = Conversation(ws, totals)
        if not await conv.until(lambda c=conv: c.started is not None, 30):
            totals.connect_errors += 1
            why = "closed" if conv.closed else "no session.started in 30 s"
            totals.errors[f"connect: {why} {ws.close_code or ''}".strip()] += 1
            await ws.close()
            continue
        totals.sessions_opened += 1
        ends = min(deadline, time.monotonic() + rng.uniform(*SESSION_SECONDS))
        turn = 0
        while time.monotonic() < ends - 3 and not conv.closed:
            kind = rng.choices(list(TURN_WEIGHTS), weights=list(TURN_WEIGHTS.values()))[0]
            turn += 1
            totals.turns[kind] += 1
            if await take_turn(conv, kind, rng, turn, deadline):
                totals.answered[kind] += 1
            await asyncio.sleep(rng.uniform(0.5, 3.0))
        if conv.closed:
            totals.sessions_ended_early += 1
        elif rng.random() < args.vanish_rate:
            totals.sessions_vanished += 1
            ws.transport.abort()  # the client's network is gone: no close frame
        else:
            await ws.send(protocol.close_message())
            if await conv.until(lambda c=conv: c.closed, 15):
                totals.sessions_closed += 1
        with contextlib.suppress(Exception):
            await ws.close()
        conv.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await conv.reader


async def sample(
    pid: int,
    ports: dict[str, int],
    samples: list[tuple[float, int]],
    peaks: Counter[str],
    origin: float,
) -> None:
    """RSS every 2 s; the most descriptors of each kind seen, every 10 s."""
    for n in itertools.count():
        samples.append((time.monotonic() - origin, rss_kib(pid)))
        if n % 5 == 0:
            for kind, count in fd_census(pid, ports).items():
                peaks[kind] = max(peaks[kind], count)
        await asyncio.sleep(2.0)


async def probe_later(port: int, name: str, at: float, origin: float) -> dict[str, Any]:
    await asyncio.sleep(max(0.0, origin + at - time.monotonic()))
    return await asyncio.to_thread(probe, port, name)


async def load(
    args: argparse.Namespace, ctx: dict[str, Any], pid: int, ports: dict[str, int]
) -> dict[str, Any]:
    duration = args.minutes * 60
    ramp = min(10.0, duration / 6)
    origin = time.monotonic()
    deadline = origin + duration
    samples: list[tuple[float, int]] = []
    peaks: Counter[str] = Counter()
    sampler = asyncio.create_task(sample(pid, ports, samples, peaks, origin))
    users = [
        user(slot, args, ctx, origin + ramp * slot / args.sessions, deadline)
        for slot in range(args.sessions)
    ]
    window = min(60.0, duration / 4)
    # The baseline is the first minute of the steady state: once every user's first session
    # has ended (the longest lasts SESSION_SECONDS[1]), the number of sessions, their ages and
    # the allocator's working set stop changing. The minute right after the ramp is
    # reported as well; a run too short for a steady state is judged from the ramp.
    settled = ramp + SESSION_SECONDS[1]
    if duration - settled < 3 * window:
        settled = ramp
    if args.tracemalloc:
        # The baseline when the first window closes: the growth the RSS check judges.
        baseline = asyncio.create_task(probe_later(ctx["port"], "memory", settled + window, origin))
    await asyncio.gather(*users)
    sampler.cancel()
    growth = None
    if args.tracemalloc:
        await baseline
        growth = await asyncio.to_thread(probe, ctx["port"], "memory")

    def mean_mib(start: float, end: float) -> float:
        kibs = [kib for t, kib in samples if start <= t < end]
        return sum(kibs) / len(kibs) / 1024 if kibs else float("nan")

    return {
        "rss_ramp_mib": mean_mib(ramp, ramp + window),
        "rss_first_mib": mean_mib(settled, settled + window),
        "rss_first_at_s": settled,
        "rss_last_mib": mean_mib(duration - window, duration),
        "rss_max_mib": max(kib for _, kib in samples) / 1024,
        "rss_window_s": window,
        "wall_s": time.monotonic() - origin,
        "fd_peaks": dict(peaks),
        "samples": samples,
        "memory": growth,
    }


async def warm_up(ctx: dict[str, Any]) -> None:
    """A TEXT and an AUDIO session with every kind of turn, before the baseline, so lazy
    imports, first-use caches and the per-process reaper are not counted as leaks."""
    import websockets

    async def one(modality: str) -> None:
        token = await asyncio.to_thread(issue_token, ctx["agents"][modality], "soak-warm-up")
        async with websockets.connect(
            f"ws://127.0.0.1:{ctx['port']}/ws/v1/live?token={token}", compression=None
        ) as ws:
            conv = Conversation(ws, Totals())
            await conv.until(lambda: conv.started is not None, 30)
            deadline = time.monotonic() + 30
            # Every kind of turn once across the two, at the same time: a short warm-up.
            kinds = ("text", "tool") if modality == "TEXT" else ("speech", "barge_in")
            for n, kind in enumerate(kinds):
                await take_turn(conv, kind, random.Random(n), n, deadline)
            await ws.send(protocol.close_message())
            await conv.until(lambda: conv.closed, 15)

    await asyncio.gather(one("TEXT"), one("AUDIO"))


def phase(name: str, since: float) -> float:
    print(f"[soak] {name}: {time.monotonic() - since:.1f} s", file=sys.stderr, flush=True)
    return time.monotonic()


# --- the run -----------------------------------------------------------------------------------


def read_marked(stream: Any, marker: str) -> str:
    while True:
        line = stream.readline()
        if not line:
            raise RuntimeError(f"process ended before {marker}")
        if line.startswith(marker + " "):
            return str(line[len(marker) + 1 :].strip())


def wait_until(check: Any, timeout: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    queue = f"live_tools_soak_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "NO_PROXY": "127.0.0.1,localhost",
        "PYTHONWARNINGS": "ignore",
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "voice_platform.settings.local",
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "soak-" + "x" * 50),
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "TOOL_CELERY_QUEUE": queue,
        "SOAK_TRACEMALLOC": "1" if args.tracemalloc else "0",
        "GEMINI_API_KEY": "soak",
    }
    t = time.monotonic()
    ensure_database(args.database_url)
    migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
    subprocess.run(migrate, cwd=ROOT, env=env, check=True)  # noqa: S603
    for name in ("DJANGO_SETTINGS_MODULE", "DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
        os.environ[name] = env[name]
    agents = platform_setup()
    t = phase("database ready", t)

    procs: list[subprocess.Popen[Any]] = []
    emulator = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "bench.soak_emulator", "--seed", str(args.seed),
         "--cert-dir", str(workdir / "certs"),
         # Faults within the first half of a short run, so that they happen at all.
         "--latest", str(min(60.0, args.minutes * 30))],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    procs.append(emulator)
    try:
        assert emulator.stdout is not None
        assert emulator.stdin is not None
        base_url = read_marked(emulator.stdout, "URL")
        env["LIVE_API_BASE_URL"] = base_url
        env["LIVE_API_CA_FILE"] = read_marked(emulator.stdout, "CERT")
        worker_log = workdir / "celery.log"
        with worker_log.open("w") as log:
            worker = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "celery", "-A", "voice_platform", "worker", "-Q", queue,
                 "-P", "threads", "--concurrency", "4", "-l", "info", "--without-gossip",
                 "--without-mingle", "--without-heartbeat", "-n", f"{queue}@%h"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        procs.append(worker)
        if not wait_until(lambda: "ready." in worker_log.read_text(), 60, 0.2):
            raise RuntimeError(f"celery worker did not start: {worker_log}")
        port = free_port()
        daphne_log = workdir / "daphne.log"
        with daphne_log.open("w") as log:
            daphne = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                 *DAPHNE_FLAGS, "bench.soak_asgi:application"],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        procs.append(daphne)
        wait_for_port(port, daphne)
        t = phase("processes up", t)
        ports = {
            "daphne": port,
            "emulator": urlsplit(base_url).port or 443,
            "postgres": urlsplit(args.database_url).port or 5432,
            "redis": urlsplit(args.redis_url).port or 6379,
        }
        ctx: dict[str, Any] = {
            "agents": agents,
            "port": port,
            "prefix": f"soak-{uuid.uuid4().hex[:8]}-",
            "totals": Totals(),
        }
        asyncio.run(warm_up(ctx))
        time.sleep(2)
        before = snapshot(daphne.pid, ports)
        t = phase("warm-up", t)

        emulator.stdin.write("FAULTS\n")
        emulator.stdin.flush()
        rss = asyncio.run(load(args, ctx, daphne.pid, ports))
        if rss["memory"] is not None:
            (workdir / "memory.json").write_text(json.dumps(rss.pop("memory"), indent=1))
        t = phase("load", t)
        emulator.stdin.write("CLEAN\n")
        emulator.stdin.flush()

        # Vanished clients end when their resume window passes, at the reaper's next sweep.
        settle = RESUME_WINDOW + 2 * REAPER_SWEEP + 10 if ctx["totals"].sessions_vanished else 20

        def final() -> dict[str, Any] | None:
            state = run_state(ctx["prefix"])
            live = set(state["statuses"]) - set(FINAL_STATUSES)
            busy = set(state["tool_statuses"]) - set(TOOL_FINAL)
            return None if live or busy else state

        settled_at = time.monotonic()
        db_final = wait_until(final, settle, 2.0)
        db = db_final or run_state(ctx["prefix"])
        db["settle_s"] = time.monotonic() - settled_at
        # The server's tasks wind down after the last session ended.
        wait_until(lambda: probe(port)["tasks"] <= before["tasks"], 30, 1.0)
        after = snapshot(daphne.pid, ports)
        t = phase("settled", t)

        emulator.stdin.write("STATS\n")
        emulator.stdin.flush()
        emu_stats = json.loads(read_marked(emulator.stdout, "STATS"))
        emulator.stdin.write("STOP\n")
        emulator.stdin.flush()
    finally:
        for proc in reversed(procs):
            stop(proc)
    log_text = daphne_log.read_text()
    totals: Totals = ctx["totals"]
    return {
        "users": args.sessions,
        "minutes": args.minutes,
        "seed": args.seed,
        "workdir": str(workdir),
        "load": {
            "sessions_opened": totals.sessions_opened,
            "sessions_closed": totals.sessions_closed,
            "sessions_vanished": totals.sessions_vanished,
            "sessions_ended_early": totals.sessions_ended_early,
            "connect_errors": totals.connect_errors,
            "turns": dict(totals.turns),
            "answered": dict(totals.answered),
            "events": dict(totals.events),
            "end_reasons_seen": dict(totals.end_reasons),
            "errors_seen": dict(totals.errors),
        },
        "rss": rss,
        "before": before,
        "after": after,
        "db": db,
        "db_final": db_final is not None,
        "emulator": emu_stats,
        "daphne_tracebacks": log_text.count("Traceback"),
    }


def checks(result: dict[str, Any]) -> dict[str, bool]:
    before, after, db, rss = result["before"], result["after"], result["db"], result["rss"]
    fb, fa = before["fds"], after["fds"]
    pooled = ("postgres", "redis")
    other_kinds = (set(fb) | set(fa)) - {"upstream", "client", *pooled}
    session_tasks = [k for k in after["task_kinds"] if k.startswith(("bridge-", "live-"))]
    return {
        "no leaked task": after["tasks"] <= before["tasks"] and not session_tasks,
        "no upstream or client socket left": fa.get("upstream", 0) == 0
        and fa.get("client", 0) == 0,
        "no other descriptor leaked": all(fa.get(k, 0) <= fb.get(k, 0) for k in other_kinds),
        "database and Redis connections bounded by the pools": fa.get("postgres", 0)
        <= after["os_threads"]
        # A pool grows with the sessions at once and keeps its idle connections; a leak grows
        # with the sessions opened (many times the users over a run).
        and fa.get("redis", 0) <= fb.get("redis", 0) + 3 * result["users"],
        "RSS flat within 10 %": rss["rss_last_mib"] <= 1.10 * rss["rss_first_mib"],
        "every session in a final state": result["db_final"]
        and set(db["statuses"]) <= set(FINAL_STATUSES),
        "every tool call in a final state": set(db["tool_statuses"]) <= set(TOOL_FINAL),
        "work was done (turns, tool calls, barge-ins, reconnects)": db["turns"] > 0
        and db["tool_calls"] > 0
        and result["load"]["events"].get("interrupted", 0) > 0
        and db["reconnects"] > 0,
    }


def per_minute(samples: list[tuple[float, int]]) -> list[float]:
    minutes: dict[int, list[int]] = {}
    for t, kib in samples:
        minutes.setdefault(int(t // 60), []).append(kib)
    return [sum(v) / len(v) / 1024 for _, v in sorted(minutes.items())]


def report(result: dict[str, Any], verdicts: dict[str, bool]) -> str:
    load, db, rss, emu = result["load"], result["db"], result["rss"], result["emulator"]
    before, after = result["before"], result["after"]
    growth = 100 * (rss["rss_last_mib"] / rss["rss_first_mib"] - 1)
    ramp_growth = 100 * (rss["rss_last_mib"] / rss["rss_ramp_mib"] - 1)
    lines = [
        f"Soak: {result['users']} users x {result['minutes']} min (seed {result['seed']}), "
        f"{rss['wall_s']:.0f} s of load",
        f"- sessions: {load['sessions_opened']} opened, {load['sessions_closed']} closed, "
        f"{load['sessions_vanished']} vanished, {load['sessions_ended_early']} ended early, "
        f"{load['connect_errors']} connect errors",
        f"- turns taken {sum(load['turns'].values())} {load['turns']}, answered "
        f"{sum(load['answered'].values())} {load['answered']}",
        f"- interrupted events {load['events'].get('interrupted', 0)}, tool.finished "
        f"{load['events'].get('tool.finished', 0)}, errors {load['errors_seen']}",
        f"- database: {db['sessions']} sessions {db['statuses']}, end reasons {db['end_reasons']}, "
        f"{db['turns']} turns, {db['reconnects']} reconnects {db['reconnect_causes']}, "
        f"{db['tool_calls']} tool calls {db['tool_statuses']} (settled in {db['settle_s']:.0f} s)",
        f"- emulator: {emu['connections']} connections, faults drawn {emu['faults_drawn']}, "
        f"fault closes/drops {emu['fault_closes']}, black holes {emu['black_holes']}, "
        f"goAways {emu['go_aways']}, empty turns {emu['empty_turns']}, silent turns "
        f"{emu['silent_turns']}",
        f"- RSS (means over {rss['rss_window_s']:.0f} s): steady state from "
        f"{rss['rss_first_at_s']:.0f} s {rss['rss_first_mib']:.1f} MiB, last "
        f"{rss['rss_last_mib']:.1f} MiB ({growth:+.1f} %); right after the ramp "
        f"{rss['rss_ramp_mib']:.1f} MiB ({ramp_growth:+.1f} % to the last); max "
        f"{rss['rss_max_mib']:.1f} MiB; after {after['rss_kib'] / 1024:.1f} MiB",
        "- RSS by minute (MiB): " + ", ".join(f"{m:.0f}" for m in per_minute(rss["samples"])),
        f"- fds before {before['fd_total']} {before['fds']}, after {after['fd_total']} "
        f"{after['fds']}; most during the load {rss['fd_peaks']}",
        f"- asyncio tasks before {before['tasks']} {before['task_kinds']}, after "
        f"{after['tasks']} {after['task_kinds']}",
        f"- threads before {before['os_threads']}, after {after['os_threads']}; "
        f"Daphne log tracebacks: {result['daphne_tracebacks']}",
        "Checks:",
        *(f"- {'ok' if ok else 'FAILED'}: {name}" for name, ok in verdicts.items()),
    ]
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=100, help="users at once")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--vanish-rate", type=float, default=0.1)
    parser.add_argument("--database-url", default=default_database_url())
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--workdir", help="logs and certificates (default: a temp dir)")
    parser.add_argument("--json", help="also write the result here")
    parser.add_argument(
        "--tracemalloc", action="store_true",
        help="trace the server's allocations; write the growth since the first window to "
        "<workdir>/memory.json (slows the server)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    result = run(args)
    verdicts = checks(result)
    result["checks"] = verdicts
    print(report(result, verdicts))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
