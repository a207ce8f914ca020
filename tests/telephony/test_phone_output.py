"""PhoneOutput on its own: frames, marks and clears as the carrier receives them."""

from __future__ import annotations

import asyncio
import itertools
import json

import numpy as np

from telephony.phone_sink import MARK_EVERY_FRAMES, PhoneOutput


def reply_chunk(ms: int) -> bytes:
    t = np.arange(24 * ms) / 24_000
    return (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


async def test_marks_come_after_the_first_frames_then_every_100_ms_and_at_the_end():
    sent: list[dict] = []
    heard: list[int] = []

    async def send(text: str) -> None:
        sent.append(json.loads(text))

    async def nothing(*_: object) -> None:
        return None

    output = PhoneOutput(stream_sid="MZ1", send=send, close=nothing, events=nothing,
                         on_heard=lambda: heard.append(1), lead=5.0)  # fmt: skip
    output.start()
    for _ in range(25):  # one second of reply in 40 ms chunks, faster than real time
        await output.send_audio(reply_chunk(40))
    await output.send_event({"type": "turn_complete"})
    await asyncio.sleep(0.05)
    await output.stop()
    kinds = [m["event"] for m in sent]
    frames = kinds.count("media")
    assert frames == 50  # the whole second: 50 frames of 160 bytes, the tail flushed
    marks = [i for i, k in enumerate(kinds) if k == "mark"]
    # The first mark follows the reply's first frames (its playback start is timed by it).
    assert kinds[: marks[0]].count("media") < MARK_EVERY_FRAMES
    gaps = [kinds[a:b].count("media") for a, b in itertools.pairwise(marks)]
    assert all(g >= MARK_EVERY_FRAMES for g in gaps[:-1])
    assert kinds[-1] == "mark"  # the reply's last audio is marked: drained() can wait on it
    assert len(marks) <= frames // MARK_EVERY_FRAMES + 2
    # An echoed mark of this reply reports its playback once.
    output.mark_played(sent[marks[0]]["mark"]["name"])
    output.mark_played(sent[marks[1]]["mark"]["name"])
    assert heard == [1]


async def test_a_clear_drops_the_queue_and_its_marks_are_not_heard():
    sent: list[dict] = []

    async def send(text: str) -> None:
        sent.append(json.loads(text))

    async def nothing(*_: object) -> None:
        return None

    output = PhoneOutput(stream_sid="MZ1", send=send, close=nothing, events=nothing,
                         on_heard=lambda: None, lead=0.04)  # fmt: skip
    output.start()
    for _ in range(50):
        await output.send_audio(reply_chunk(40))
    await asyncio.sleep(0.1)
    assert output.output_heard_share() == 0.0
    first_mark = next(m for m in sent if m["event"] == "mark")
    await output.send_event({"type": "interrupted"})
    output.mark_played(first_mark["mark"]["name"])  # echoed by the clear: not heard
    await asyncio.sleep(0.1)
    await output.stop()
    assert [m["event"] for m in sent].count("clear") == 1
    assert sum(m["event"] == "media" for m in sent) <= 8  # ~0.1 s went out, not 2 s
    assert output.output_heard_share() is None  # a new turn: nothing of it yet
