"""The load generator's parts that need no server: histogram, target rule, utterance."""

from __future__ import annotations

import random

import pytest

from loadtest.audio import load_utterance, read_echo, speech_like, split_frames, stamp
from loadtest.config import is_loopback, normalise_target
from loadtest.stats import Histogram
from voice_client.audio import write_wav
from voice_platform.live_emulator.echo import stamp as emulator_stamp
from voice_platform.live_emulator.vad import EnergyVad, VadEvent


def test_histogram_percentiles_are_within_one_percent_of_the_exact_ones():
    values = [random.Random(3).uniform(0.5, 3000) for _ in range(5000)]
    hist = Histogram()
    for v in values:
        hist.add(v)
    ordered = sorted(values)
    for q in (50, 95, 99):
        exact = ordered[int(len(ordered) * q / 100) - 1]
        assert hist.percentile(q) == pytest.approx(exact, rel=0.01, abs=0.1)
    assert hist.max == max(values)
    assert Histogram().summary()["p50_ms"] is None


@pytest.mark.parametrize(
    ("url", "local"),
    [("http://127.0.0.1:8000", True), ("http://localhost:8000", True),
     ("https://[::1]:443", True), ("http://127.8.9.10", True),
     ("http://192.0.2.10:8000", False), ("http://10.0.0.1", False),
     ("http://no-such-host.invalid", False),
     # Names are never resolved: what answers 127.0.0.1 now may not when callers connect.
     ("http://127.0.0.1.nip.io:8000", False), ("http://loopback.example", False),
     ("http://localhost.localdomain", False)],
)  # fmt: skip
def test_only_literal_loopback_targets_count_as_local(url, local):
    assert is_loopback(url) is local


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1", "127.0.0.1:8000", "http://127.0.0.1:8000/api", "http://:80"]
)
def test_a_target_must_be_a_base_url(url):
    with pytest.raises(ValueError, match="target"):
        normalise_target(url)


def test_the_default_utterance_is_heard_as_one_turn_by_an_energy_vad():
    vad = EnergyVad(threshold=500.0, start_ms=40, silence_ms=500)
    events = []
    for frame in split_frames(speech_like() + bytes(16_000), 20):  # then 0.5 s of silence
        events += vad.feed(frame)
    assert events == [VadEvent.SPEECH_START, VadEvent.SPEECH_END]


def test_a_wav_file_is_resampled_to_16_khz_mono(tmp_path):
    path = tmp_path / "turn.wav"
    write_wav(path, speech_like(rate=8000), rate=8000)
    assert len(load_utterance(str(path))) == pytest.approx(2 * 16_000 * 1.2, abs=4)
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    with pytest.raises(ValueError, match="not a PCM WAV"):
        load_utterance(str(tmp_path / "bad.wav"))
    with pytest.raises(ValueError, match="no such file"):
        load_utterance(str(tmp_path / "missing.wav"))


def test_an_echoed_frame_gives_back_its_sequence_and_both_times():
    frame = stamp(bytes(640), 42)
    seq, sent, received = read_echo(emulator_stamp(frame, 123_456_789)) or (0, 0, 0)
    assert seq == 42
    assert sent > 0
    assert received == 123_456_789
    assert read_echo(b"\x00" * 10) is None
