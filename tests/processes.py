"""Real server processes for tests: Daphne and a private Redis, with the test's database.

Fault tests stop and start their own Redis (never the shared one other tests use) and
talk to Daphne over real sockets, so what they see is what a client of a deployment sees.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings

from sessions.protocol_schema import event_problems

ROOT = Path(__file__).resolve().parents[1]
DAPHNE = [sys.executable, "-m", "daphne", "-b", "127.0.0.1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def database_url() -> str:
    """A URL for the database this test process uses (the pytest test database)."""
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    auth = f"{user}:{db['PASSWORD']}" if db.get("PASSWORD") else user
    host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


def wait_listening(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def stop_processes(procs: list[subprocess.Popen[Any]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def live_env(live_emulator: Any, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a server process that talks to ``live_emulator``."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "voice_platform.settings.test",
        "DATABASE_URL": database_url(),  # the test database, shared with this process
        "REDIS_URL": redis_url,
        "LIVE_API_BASE_URL": live_emulator.base_url,
        "LIVE_API_CA_FILE": str(live_emulator.cert_path),
        "GEMINI_API_KEY": "test-key",
        **extra,
    }


def start_daphne(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[Any], int]:
    port = free_port()
    log = log_path.open("w")
    proc = subprocess.Popen(
        [*DAPHNE, "-p", str(port), "voice_platform.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,  # kept in the test's tmp dir for post-mortems
    )
    log.close()  # the child has its own descriptor
    wait_listening(port)
    return proc, port


class PrivateRedis:
    """A Redis server of the test's own, on a fixed port, that can go down and come back."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[Any] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_listening(self.port)

    def stop(self) -> None:
        """Gone at once, as a crashed server is: SIGKILL, connections reset."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


async def until(ws: Any, kind: str, timeout: float = 15) -> dict[str, Any]:
    """Read a websockets client until an event of ``kind``; audio frames are skipped, every
    JSON event is checked against the protocol schema."""
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.recv()
            if isinstance(message, str):
                event: dict[str, Any] = json.loads(message)
                # Every event a real server sends is checked against the protocol schema.
                problems = event_problems(event)
                assert not problems, f"event off the protocol schema: {event!r}: {problems}"
                if event["type"] == kind:
                    return event
