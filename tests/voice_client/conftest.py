"""The console against a real platform: Daphne processes with the Live emulator, and the
`voice-agent` console script run as a subprocess, as a user runs it.

Every `talk` run logs the server's JSON events (`--log-events`), and each one is checked
against sessions/protocol.schema.json when the console has finished."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from conftest import require_postgres
from tests.processes import PrivateRedis, database_url, live_env, start_daphne, stop_processes
from tests.sessions.conftest import assert_protocol
from voice_client.credentials import API_KEY_ENV, TOKEN_ENV

VOICE_AGENT = Path(sys.executable).with_name("voice-agent")
SETTINGS = "tests.voice_client.daphne_settings"


@dataclass
class Server:
    proc: subprocess.Popen[Any]
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


StartServer = Callable[..., Server]


@pytest.fixture
def start_server(live_emulator: Any, tmp_path: Path) -> Iterator[StartServer]:
    """Starts Daphne processes of the platform on the test database and one Redis.

    Brute-force protection is on in them (daphne_settings.py), and the Redis is private:
    its cache holds the failed-attempt counters, and the 4030 test blocks 127.0.0.1 there.
    ``start(database_port=P)``: the process reaches PostgreSQL through port P (a TcpProxy
    the test can shut), and gives up waiting for a connection after 2 s."""
    require_postgres()
    redis = PrivateRedis(tmp_path)
    redis.start()
    env = live_env(live_emulator, redis.url, DJANGO_SETTINGS_MODULE=SETTINGS)
    servers: list[Server] = []

    def start(database_port: int | None = None) -> Server:
        own = dict(env)
        if database_port is not None:
            parts = urlsplit(database_url())
            auth = parts.netloc.rpartition("@")[0]
            gated = parts._replace(netloc=f"{auth}@127.0.0.1:{database_port}")
            own["DATABASE_URL"] = urlunsplit(gated)
            own["DB_POOL_TIMEOUT"] = "2"
        proc, port = start_daphne(own, tmp_path / f"daphne-{len(servers)}.log")
        servers.append(Server(proc, port))
        return servers[-1]

    try:
        yield start
    finally:
        stop_processes([s.proc for s in servers])
        redis.stop()
        for n in range(len(servers)):  # shown by pytest when the test failed
            print((tmp_path / f"daphne-{n}.log").read_text()[-2000:])


@pytest.fixture
def server(start_server: StartServer) -> Server:
    return start_server()


def console_env(extra: dict[str, str] | None) -> dict[str, str]:
    """The test's environment without credentials of its own, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, API_KEY_ENV)}
    return {**env, **(extra or {})}


@dataclass
class Console:
    """A running `voice-agent` process; its stdout lines are collected as they come, and
    once it finished, the JSON events it logged, each checked against the schema."""

    proc: asyncio.subprocess.Process
    events_path: Path | None = None
    lines: list[str] = field(default_factory=list)
    stderr: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls, *args: str | Path, stdin: bool = False, env: dict[str, str] | None = None
    ) -> Console:
        """``env``: variables for the console (credentials), on top of the test's own."""
        events_path = None
        if args[:1] == ("talk",):
            fd, name = tempfile.mkstemp(prefix="voice-agent-events-", suffix=".jsonl")
            os.close(fd)
            events_path = Path(name)
            args = (*args, "--log-events", events_path)
        proc = await asyncio.create_subprocess_exec(
            str(VOICE_AGENT),
            *map(str, args),
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=console_env(env),
        )
        console = cls(proc, events_path)
        console.reader = asyncio.create_task(console._read())
        return console

    def _check_events(self) -> None:
        """Every event the real server sent must be on the protocol schema; and the log
        must be complete: one logged `session.started` per printed one."""
        if self.events_path is None:
            return
        try:
            logged = self.events_path.read_text().splitlines()
        finally:
            self.events_path.unlink(missing_ok=True)
        self.events = [json.loads(line) for line in logged]
        for event in self.events:
            assert_protocol(event, "serverEvent")
        started = sum(event["type"] == "session.started" for event in self.events)
        assert started == self.count("session.started"), self.stdout

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode().rstrip("\n"))
            self.changed.set()

    @property
    def stdout(self) -> str:
        return "\n".join(self.lines)

    def count(self, prefix: str) -> int:
        return sum(line.startswith(prefix) for line in self.lines)

    async def wait_for(self, prefix: str, count: int = 1, timeout: float = 20) -> None:
        """Until ``count`` stdout lines start with ``prefix``."""
        try:
            async with asyncio.timeout(timeout):
                while self.count(prefix) < count:
                    if self.proc.returncode is not None:
                        break
                    self.changed.clear()
                    with_wait = asyncio.create_task(self.changed.wait())
                    done = asyncio.create_task(self.proc.wait())
                    await asyncio.wait({with_wait, done}, return_when=asyncio.FIRST_COMPLETED)
                    with_wait.cancel()
                    done.cancel()
        except TimeoutError:
            pass
        assert self.count(prefix) >= count, f"no {count} x {prefix!r} in:\n{self.stdout}"

    async def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def finish(self, timeout: float = 30) -> int:
        """Close stdin (the end of typing) and wait for the exit status."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            async with asyncio.timeout(timeout):
                assert self.proc.stderr is not None
                self.stderr = (await self.proc.stderr.read()).decode()
                code = await self.proc.wait()
                if self.reader is not None:
                    await self.reader
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise
        self._check_events()
        return code


async def run_console(
    *args: str | Path, timeout: float = 40, env: dict[str, str] | None = None
) -> Console:
    """Run `voice-agent` to its end (stdin empty)."""
    console = await Console.start(*args, env=env)
    await console.finish(timeout)
    return console
