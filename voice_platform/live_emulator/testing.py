"""Helpers to run the emulator inside tests, another thread, or another process.

async with running_emulator(pace=0) as emu:
    client = emu.make_client()
    async with client.aio.live.connect(model=emu.model, config=...) as session: ...
    emu.recorder.last().texts            # what "Google" received
    emu.fail_next(close_after=1)         # the next connection fails
    emu.faults_header(drop_after=2)      # or: this connection fails (SDK headers)

async with running_emulator(profile="realistic", time_scale=60, pace=20) as emu: ...
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from google import genai
from google.genai import types

from voice_platform.live_emulator.certs import client_ssl_context
from voice_platform.live_emulator.config import DEFAULT_MODELS, EmulatorConfig
from voice_platform.live_emulator.faults import FAULTS_HEADER, Faults
from voice_platform.live_emulator.profiles import config_for
from voice_platform.live_emulator.recorder import Recorder
from voice_platform.live_emulator.server import Emulator

DEFAULT_MODEL = DEFAULT_MODELS[1]


class OffsetClock:
    """Wall clock that tests can move forward (token and handle expiry)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time

        return time.time() + self.offset


class RunningEmulator:
    """A started emulator plus what a client needs to reach it."""

    model = DEFAULT_MODEL

    def __init__(self, emulator: Emulator, clock: OffsetClock | None = None) -> None:
        self.emulator = emulator
        self._clock = clock
        self.ssl_context: ssl.SSLContext = client_ssl_context(emulator.cert_path)

    @property
    def base_url(self) -> str:
        return self.emulator.base_url

    @property
    def port(self) -> int:
        return self.emulator.port

    @property
    def cert_path(self) -> Path:
        return self.emulator.cert_path

    @property
    def recorder(self) -> Recorder:
        return self.emulator.recorder

    @property
    def config(self) -> EmulatorConfig:
        return self.emulator.config

    def make_client(self, api_key: str = "test-key", api_version: str = "v1beta") -> genai.Client:
        """A real `genai.Client` that trusts the emulator's certificate.

        Keep a reference to it: a garbage-collected client closes its HTTP session.
        """
        _no_proxy_for_loopback()
        return genai.Client(
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=self.base_url,
                api_version=api_version,
                async_client_args={"ssl": self.ssl_context, "verify": self.ssl_context},
                client_args={"verify": self.ssl_context},
            ),
        )

    def fail_next(self, faults: Faults | None = None, **settings: Any) -> Faults:
        """Queue faults for the next connection (FIFO; each call is one connection)."""
        chosen = faults if faults is not None else Faults().with_(**settings)
        self.emulator.queue_faults(chosen)
        return chosen

    @staticmethod
    def faults_header(faults: Faults | None = None, **settings: Any) -> dict[str, str]:
        """Headers for `LiveConnectConfig(http_options=HttpOptions(headers=...))`."""
        chosen = faults if faults is not None else Faults().with_(**settings)
        return {FAULTS_HEADER: chosen.to_header()}

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's wall clock (tokens, handles, session limits) forward."""
        if self._clock is None:
            raise RuntimeError("the emulator was not started with an adjustable clock")
        self._clock.offset += seconds


def _no_proxy_for_loopback() -> None:
    # The SDK's websocket honours HTTPS_PROXY; the emulator is always on loopback.
    hosts = [h for h in os.environ.get("NO_PROXY", "").split(",") if h]
    for host in ("127.0.0.1", "localhost"):
        if host not in hosts:
            hosts.append(host)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(hosts)


def _build_config(config: EmulatorConfig | None, overrides: dict[str, Any]) -> EmulatorConfig:
    profile = overrides.pop("profile", None)
    if config is not None and profile is not None:
        raise ValueError("pass either a ready config or a profile name, not both")
    base = config or config_for(profile or "default", port=0)
    if "faults" in overrides and isinstance(overrides["faults"], str):
        overrides["faults"] = Faults.parse(overrides["faults"])
    return dataclasses.replace(base, **overrides)


@contextlib.asynccontextmanager
async def running_emulator(
    config: EmulatorConfig | None = None, **overrides: Any
) -> AsyncIterator[RunningEmulator]:
    """Start the emulator in the current event loop (port 0 = a free port).

    `overrides` are `EmulatorConfig` fields, plus `profile="realistic"` to start from the
    realistic profile, e.g. `running_emulator(profile="realistic", time_scale=60, pace=20)`;
    or pass a ready config (`EmulatorConfig.realistic(port=0, ...)`).
    """
    clock = OffsetClock()
    overrides.setdefault("clock", clock)
    emulator = Emulator(_build_config(config, overrides))
    await emulator.start()
    try:
        yield RunningEmulator(emulator, clock if emulator.config.clock is clock else None)
    finally:
        await emulator.stop()


class EmulatorThread:
    """The emulator on its own event loop in a daemon thread, for sync code and servers
    running in other loops (e.g. Daphne in tests). Use as a context manager."""

    def __init__(self, config: EmulatorConfig | None = None, **overrides: Any) -> None:
        self._config = config
        self._overrides = overrides
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="live-emulator", daemon=True)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.running: RunningEmulator | None = None

    def start(self) -> RunningEmulator:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError("live emulator failed to start") from self._error
        if self.running is None:
            raise RuntimeError("live emulator did not start within 30 s")
        return self.running

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)

    def call(self, func: Any, *args: Any) -> None:
        """Run a plain function in the emulator's loop (its state is not thread-safe)."""
        self._loop.call_soon_threadsafe(func, *args)

    def __enter__(self) -> RunningEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with running_emulator(self._config, **self._overrides) as running:
                self.running = running
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise


def run_in_thread(config: EmulatorConfig | None = None, **overrides: Any) -> EmulatorThread:
    """Start the emulator in a background thread; call `.stop()` (or use `with`)."""
    thread = EmulatorThread(config, **overrides)
    thread.start()
    return thread


@contextlib.contextmanager
def emulator_in_thread(
    config: EmulatorConfig | None = None, **overrides: Any
) -> Iterator[RunningEmulator]:
    with EmulatorThread(config, **overrides) as running:
        yield running
