"""The uplink keeps no more silence than a replay would send: a listening user's session
holds 0.3 s of audio instead of up to 30 s, and every replay is what it was without that."""

from __future__ import annotations

import random

import pytest

from sessions import uplink as uplink_module
from sessions.uplink import REPLAY_PREFIX_BYTES, ItemKind, Uplink, UplinkItem

LOUD = b"\x00\x10" * 1600  # 100 ms at 4096: speech
QUIET = b"\x00\x00" * 1600  # 100 ms of digital silence
HUSH = b"\x05\x00" * 1600  # 100 ms at 5: silence a replay leaves out, but not zeros


class Untrimmed(Uplink):
    """The uplink as it was: every unacknowledged item kept until a handle or the cap."""

    def _trim_silent_lead(self, item: UplinkItem) -> None:
        self._silent_lead = None


def frame(payload: bytes) -> UplinkItem:
    return UplinkItem(ItemKind.AUDIO, payload)


def send(uplink: Uplink, item: UplinkItem) -> None:
    uplink.put(item)
    uplink.sent(uplink.replay[0] if uplink.replay else uplink.pending[0])


def test_a_listening_user_leaves_only_the_replay_prefix_unacknowledged() -> None:
    uplink = Uplink()
    for _ in range(300):  # 30 s of silence: the cap, before
        send(uplink, frame(QUIET))
    kept = sum(item.audio_bytes for item in uplink.unacknowledged)
    assert kept == REPLAY_PREFIX_BYTES  # 0.3 s, three frames
    speech = [frame(LOUD) for _ in range(5)]
    for item in speech:
        send(uplink, item)
    current = uplink.current_turn()
    uplink.replay_current_turn()
    assert list(uplink.replay) == current
    assert list(uplink.replay)[-5:] == speech
    assert len(uplink.replay) == 8


def test_silence_after_speech_is_kept_whole() -> None:
    """Only the silence before the turn's first speech is left out by a replay."""
    uplink = Uplink()
    items = [frame(LOUD), *(frame(HUSH) for _ in range(20)), frame(LOUD)]
    for item in items:
        send(uplink, item)
    assert list(uplink.unacknowledged) == items


def test_the_next_turn_is_trimmed_again_after_its_handle() -> None:
    uplink = Uplink()
    for item in [frame(LOUD)] * 3:
        send(uplink, item)
    uplink.turn_complete()
    send(uplink, frame(QUIET))  # before the handle came
    uplink.handle_saved()
    for _ in range(50):
        send(uplink, frame(QUIET))
    assert sum(item.audio_bytes for item in uplink.unacknowledged) == REPLAY_PREFIX_BYTES
    assert uplink.turn_position == 1


def test_silence_is_measured_only_while_all_that_is_held_is_silence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The level of a frame is computed only while it could be dropped (CPU per frame)."""
    calls: list[int] = []
    real = uplink_module.is_silent

    def counted(pcm: bytes, *args: float) -> bool:
        calls.append(len(pcm))
        return real(pcm, *args)

    monkeypatch.setattr(uplink_module, "is_silent", counted)
    uplink = Uplink()
    for payload in (QUIET, QUIET, LOUD, *[QUIET] * 10, *[LOUD] * 10):
        send(uplink, frame(payload))
    assert len(calls) == 3  # two of silence, then the speech that ends the lead


@pytest.mark.parametrize("seed", range(40))
def test_every_replay_is_what_the_untrimmed_uplink_replays(seed: int) -> None:
    """Random calls: speech, silence, text and control items, turns completed and saved,
    reconnects; both replays, and what is sent after them, are the same item for item."""
    rng = random.Random(seed)
    trimmed, untrimmed = Uplink(), Untrimmed()
    for _ in range(400):
        roll = rng.random()
        if roll < 0.85:
            kind = rng.choices(["quiet", "hush", "loud", "text", "start"], [40, 20, 30, 5, 5])[0]
            if kind == "text":
                item = UplinkItem(ItemKind.TEXT, ("hello", True))
            elif kind == "start":
                item = UplinkItem(ItemKind.ACTIVITY_START)
            else:
                item = frame({"quiet": QUIET, "hush": HUSH, "loud": LOUD}[kind])
            for uplink in (trimmed, untrimmed):
                send(uplink, item)
        elif roll < 0.92:
            trimmed.turn_complete()
            untrimmed.turn_complete()
        elif roll < 0.97:
            trimmed.handle_saved()
            untrimmed.handle_saved()
        else:
            replay = rng.choice(["current_turn", "unacknowledged"])
            for uplink in (trimmed, untrimmed):
                getattr(uplink, f"replay_{replay}")()
            assert list(trimmed.replay) == list(untrimmed.replay)
        assert trimmed.turn_position == untrimmed.turn_position
        assert [i.payload for i in trimmed.current_turn() if i.kind is ItemKind.TEXT] == [
            i.payload for i in untrimmed.current_turn() if i.kind is ItemKind.TEXT
        ]
    trimmed.replay_current_turn()
    untrimmed.replay_current_turn()
    assert list(trimmed.replay) == list(untrimmed.replay)
