"""Headless Chromium (Debian's, never a downloaded one) driven by Playwright against a real
Daphne process of the platform and the Live emulator.

The fake microphone plays a WAV file each test writes (`mic_wav`); `%noloop` plays it once,
then silence. Screenshots go to var/test-artifacts/browser/. Under CI a browser that cannot
start fails the test; locally it skips it with the reason.
"""

from __future__ import annotations

import contextlib
import math
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from conftest import IN_CI, require_postgres, require_redis
from tests.processes import ROOT, live_env, start_daphne, stop_processes
from tests.tcp_proxy import TcpProxy
from tests.tools.conftest import celery_worker_process  # noqa: F401  (a fixture)

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "var" / "test-artifacts" / "browser"
WAV_RATE = 48_000

# Records every microphone stream, AudioContext and WebSocket the page makes, whoever makes
# them, so a test can check that close() left none live without trusting the SDK's own
# bookkeeping.
MEDIA_SPY = """
window.__media = { streams: [], contexts: [], sockets: [] };
(() => {
  const devices = navigator.mediaDevices;
  const gum = devices && devices.getUserMedia.bind(devices);
  if (gum) {
    navigator.mediaDevices.getUserMedia = async (c) => {
      const s = await gum(c);
      window.__media.streams.push(s);
      window.__media.micStartedAt = performance.now();
      return s;
    };
  }
  const NativeContext = window.AudioContext;
  window.AudioContext = class extends NativeContext {
    constructor(...args) { super(...args); window.__media.contexts.push(this); }
  };
  const NativeSocket = window.WebSocket;
  window.WebSocket = class extends NativeSocket {
    constructor(...args) { super(...args); window.__media.sockets.push(this); }
  };
})();
window.__mediaState = () => ({
  tracks: window.__media.streams.flatMap((s) => s.getTracks().map((t) => t.readyState)),
  contexts: window.__media.contexts.map((c) => c.state),
  sockets: window.__media.sockets.map((w) => w.readyState),  // 3: CLOSED
});
"""


def write_mic_wav(path: Path, segments: list[tuple[float, float]]) -> Path:
    """A 48 kHz PCM16 mono WAV: (seconds, frequency) segments, 0 Hz = silence, tones at
    half scale."""
    parts = []
    for seconds, freq in segments:
        t = np.arange(round(WAV_RATE * seconds)) / WAV_RATE
        parts.append(0.5 * np.sin(2 * math.pi * freq * t) if freq else np.zeros(len(t)))
    pcm = (np.concatenate(parts) * 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(WAV_RATE)
        out.writeframes(pcm)
    return path


def chromium_args(mic: Path | None, *extra: str) -> list[str]:
    args = [
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
    ]  # fmt: skip
    if mic is not None:
        args.append(f"--use-file-for-fake-audio-capture={mic}%noloop")
    return [*args, *extra]


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"browser test screenshots: {ARTIFACTS}")
    return ARTIFACTS


Launch = Callable[..., Awaitable[Any]]


@pytest_asyncio.fixture
async def launch_browser() -> AsyncIterator[Launch]:
    """`await launch_browser(mic_wav, *extra_args)` -> a Playwright Browser; all closed at the
    end. Chromium that cannot start: a failure in CI, a skip locally."""
    try:
        from playwright.async_api import async_playwright
    except ImportError as exc:  # pragma: no cover - playwright is a test dependency
        _cannot(f"playwright is not installed: {exc}")
    _require_chromium()  # before the driver starts: a skip or failure must not leak it
    manager = async_playwright()
    playwright = await manager.start()
    browsers: list[Any] = []

    async def launch(mic: Path | None, *extra: str) -> Any:
        try:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=chromium_args(mic, *extra)
            )
        except Exception as exc:
            _cannot(f"Chromium did not start: {exc}")
        browsers.append(browser)
        return browser

    try:
        yield launch
    finally:
        for browser in browsers:
            await browser.close()
        await manager.__aexit__(None, None, None)


def _require_chromium() -> None:
    if not CHROMIUM.exists():
        _cannot(f"{CHROMIUM} not found")


def _cannot(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"headless Chromium is required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def live_emulator_settings() -> dict[str, Any]:
    # Replies stream at 1.5x real time, as the real service sends ahead of playback: the
    # player's queue grows during a reply and a barge-in has queued audio to stop.
    return {"pace": 1.5}


@pytest_asyncio.fixture
async def upstream_proxy(live_emulator: Any) -> AsyncIterator[TcpProxy]:
    """The network between the platform and the model service: `drop()` kills it."""
    async with TcpProxy("127.0.0.1", live_emulator.port) as proxy:
        yield proxy


@contextlib.contextmanager
def running_platform(
    live_emulator: Any, upstream_proxy: TcpProxy, tmp_path: Path, **extra_env: str
) -> Iterator[str]:
    """A Daphne process of the platform (the test database, Redis), its model service
    reached through `upstream_proxy`; its URL."""
    require_postgres()
    env = live_env(
        live_emulator, require_redis(), LIVE_API_BASE_URL=upstream_proxy.base_url, **extra_env
    )
    proc, port = start_daphne(env, tmp_path / "daphne.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_processes([proc])
        print((tmp_path / "daphne.log").read_text()[-3000:])


@pytest.fixture
def platform_url(live_emulator: Any, upstream_proxy: TcpProxy, tmp_path: Path) -> Iterator[str]:
    with running_platform(live_emulator, upstream_proxy, tmp_path) as url:
        yield url
