"""The console against a real platform: Daphne processes with the Live emulator, and the
`voice-agent` console script run as a subprocess, as a user runs it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import require_postgres
from tests.processes import PrivateRedis, live_env, start_daphne, stop_processes

VOICE_AGENT = Path(sys.executable).with_name("voice-agent")
SETTINGS = "tests.voice_client.daphne_settings"


@dataclass
class Server:
    proc: subprocess.Popen[Any]
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@pytest.fixture
def start_server(live_emulator: Any, tmp_path: Path) -> Iterator[Callable[[], Server]]:
    """Starts Daphne processes of the platform on the test database and one Redis.

    Brute-force protection is on in them (daphne_settings.py), and the Redis is private:
    its cache holds the failed-attempt counters, and the 4030 test blocks 127.0.0.1 there."""
    require_postgres()
    redis = PrivateRedis(tmp_path)
    redis.start()
    env = live_env(live_emulator, redis.url, DJANGO_SETTINGS_MODULE=SETTINGS)
    servers: list[Server] = []

    def start() -> Server:
        proc, port = start_daphne(env, tmp_path / f"daphne-{len(servers)}.log")
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
def server(start_server: Callable[[], Server]) -> Server:
    return start_server()


@dataclass
class Console:
    """A running `voice-agent` process; its stdout lines are collected as they come."""

    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    stderr: str = ""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, *args: str | Path, stdin: bool = False) -> Console:
        proc = await asyncio.create_subprocess_exec(
            str(VOICE_AGENT),
            *map(str, args),
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        console = cls(proc)
        console.reader = asyncio.create_task(console._read())
        return console

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
        return code


async def run_console(*args: str | Path, timeout: float = 40) -> Console:
    """Run `voice-agent` to its end (stdin empty)."""
    console = await Console.start(*args)
    await console.finish(timeout)
    return console
