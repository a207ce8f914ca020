"""The capture worklet, run in Chromium (an OfflineAudioContext renders a known signal through
the real AudioWorkletProcessor), against the Python audio utilities on the same input:
float -> PCM16 bit for bit, resampling to 16 kHz within a stated SNR of soxr's."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from tests.processes import ROOT
from voice_client.audio import MIN_RESAMPLING_SNR_DB, float32_to_pcm16, resample, sine, snr_db

STATIC = ROOT / "voice_platform" / "static"
FRAME = 1600  # samples in one 100 ms frame at 16 kHz

# Renders `input` (float32 at `rate`) through the capture worklet and returns the PCM16 it
# posted. The input is padded with zeros so its last samples leave in a whole frame.
RENDER = """
async ({ rate, input, pad }) => {
  const samples = Float32Array.from([...input, ...new Array(pad).fill(0)]);
  const context = new OfflineAudioContext(1, samples.length, rate);
  await context.audioWorklet.addModule("/voice_agent/capture-worklet.js");
  const buffer = context.createBuffer(1, samples.length, rate);
  buffer.copyToChannel(samples, 0);
  const source = context.createBufferSource();
  source.buffer = buffer;
  const node = new AudioWorkletNode(context, "voice-agent-capture", {
    processorOptions: { targetRate: 16000, frameMs: 100 },
  });
  const frames = [];
  node.port.onmessage = (m) => frames.push(Array.from(new Int16Array(m.data.pcm)));
  source.connect(node);
  node.connect(context.destination);
  source.start(0);
  await context.startRendering();
  await new Promise((resolve) => setTimeout(resolve, 100)); // the last frames' messages
  return frames.flat();
}
"""


@pytest.fixture
def static_server() -> Iterator[str]:
    """The SDK's static files over HTTP (a worklet module needs a real origin)."""
    handler = functools.partial(_QuietHandler, directory=str(STATIC))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


async def render(launch_browser: Any, url: str, rate: int, signal: np.ndarray) -> np.ndarray:
    browser = await launch_browser(None)
    page = await browser.new_page()
    await page.goto(url + "/voice_agent/")
    pad = 2 * FRAME * rate // 16000
    out = await page.evaluate(RENDER, {"rate": rate, "input": signal.tolist(), "pad": pad})
    return np.asarray(out, dtype=np.int16)


async def test_float_to_pcm16_is_bit_for_bit_python_s(launch_browser, static_server):
    edges = [-2.0, -1.5, -1.0, -0.99999, -0.5, -1 / 32768, -1e-9, 0.0, 1e-9, 1 / 32767,
             0.25, 0.5, 0.75, 0.99999, 1.0, 1.5, 2.0]  # fmt: skip
    noise = np.random.default_rng(7).uniform(-1.2, 1.2, 6000)
    # Float32, as every sample in an AudioBuffer is; at 16 kHz the worklet does not resample.
    signal = np.asarray([*edges, *noise], dtype=np.float32)
    worklet = await render(launch_browser, static_server, 16_000, signal)
    python = np.frombuffer(float32_to_pcm16(signal), dtype="<i2")
    assert len(worklet) >= len(python)
    np.testing.assert_array_equal(worklet[: len(python)], python)
    # The edges themselves, spelled out: clipping and the asymmetric scale.
    assert worklet[:6].tolist() == [-32768, -32768, -32768, -32767, -16384, -1]
    assert worklet[13:17].tolist() == [32766, 32767, 32767, 32767]


@pytest.mark.parametrize("rate", [48_000, 44_100])
async def test_resampling_to_16_khz_is_within_tolerance_of_soxr(
    launch_browser, static_server, rate
):
    """A 1 kHz tone plus an 11 kHz one (above 16 kHz's Nyquist frequency: it must be
    filtered out, not folded down to 5 kHz) at the AudioContext's usual rates. Tolerance:
    the worklet's output is within MIN_RESAMPLING_SNR_DB (40 dB) of Python's soxr result
    and of the ideal 1 kHz tone, over the middle 80 % (the ends of an abruptly started tone
    ring in any filter), and as long."""
    wanted = sine(1000.0, rate, 1.0, amplitude=0.4)
    signal = wanted + sine(11_000.0, rate, 1.0, amplitude=0.2)
    worklet = await render(launch_browser, static_server, rate, signal)
    python = np.frombuffer(float32_to_pcm16(resample(signal, rate, 16_000)), dtype="<i2")
    assert len(python) == 16_000
    assert len(worklet) >= len(python)
    worklet = worklet[: len(python)]
    edge = len(python) // 10
    middle = slice(edge, len(python) - edge)
    ours = worklet[middle].astype(np.float64)
    theirs = python[middle].astype(np.float64)
    ideal = sine(1000.0, 16_000, 1.0, amplitude=0.4)[middle] * 32767
    assert snr_db(ours, theirs) >= MIN_RESAMPLING_SNR_DB
    assert snr_db(ours, ideal) >= MIN_RESAMPLING_SNR_DB
