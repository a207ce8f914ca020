"""TurnClock: what each per-turn figure measures, on a fake clock."""

from __future__ import annotations

import pytest

from sessions.turn_timing import (
    LATENCY_BUCKETS_MS,
    PLAYBACK_WAIT_SECONDS,
    TurnClock,
    TurnTiming,
    histogram_add,
    histogram_merge,
    histogram_percentile,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def timed() -> tuple[TurnClock, FakeClock, list[TurnTiming]]:
    fake = FakeClock()
    finished: list[TurnTiming] = []
    return TurnClock(on_finished=finished.append, clock=fake), fake, finished


def test_a_text_turn_is_timed_from_its_end_to_the_first_output_in_and_out(timed):
    clock, fake, finished = timed
    clock.speech_ended("text")
    fake.advance(0.4)
    assert clock.reply_in(audio=False)
    fake.advance(0.01)
    clock.reply_out()
    fake.advance(0.5)
    assert not clock.reply_in(audio=False)  # later output is not the first
    clock.turn_complete()
    [turn] = finished
    assert (turn.turn, turn.speech_end_source, turn.outcome) == (1, "text", "complete")
    assert turn.reply_in_ms == pytest.approx(400, abs=0.2)
    assert turn.reply_out_ms == pytest.approx(410, abs=0.2)
    assert turn.playback_ms is None
    assert turn.reply_ms == turn.reply_out_ms


def test_more_speech_before_the_reply_moves_the_turn_end(timed):
    clock, fake, finished = timed
    clock.speech_ended("vad")
    fake.advance(1.0)
    clock.speech_ended("vad")  # the user went on: the latest end counts
    fake.advance(0.3)
    clock.reply_in(audio=True)
    clock.reply_out()
    clock.turn_complete()
    assert finished == []  # an audio reply waits for its playback report
    fake.advance(0.2)
    timing = clock.playback_started()
    assert timing is not None
    [turn] = finished
    assert turn.turn == 1
    assert turn.reply_in_ms == pytest.approx(300, abs=0.2)
    assert turn.playback_ms == pytest.approx(500, abs=0.2)
    assert turn.reply_ms == turn.playback_ms
    assert clock.playback_started() is None  # one report per reply


def test_an_audio_turn_without_a_playback_report_is_stored_after_the_wait(timed):
    clock, fake, finished = timed
    clock.speech_ended("activity_end")
    clock.reply_in(audio=True)
    clock.reply_out()
    clock.turn_complete()
    fake.advance(PLAYBACK_WAIT_SECONDS - 1)
    clock.tick()
    assert finished == []
    fake.advance(1)
    clock.tick()
    assert [t.playback_ms for t in finished] == [None]


def test_the_next_turn_hands_over_the_one_waiting_for_playback(timed):
    clock, _fake, finished = timed
    clock.speech_ended("vad")
    clock.reply_in(audio=True)
    clock.reply_out()
    clock.turn_complete()
    clock.speech_ended("vad")
    assert [t.turn for t in finished] == [1]
    assert clock.turn_number == 2


def test_tool_time_counts_the_span_with_any_call_in_flight(timed):
    clock, fake, finished = timed
    clock.speech_ended("text")
    clock.tool_started()
    fake.advance(0.5)
    clock.tool_started()  # overlapping: counted once
    fake.advance(0.5)
    clock.tool_finished()
    fake.advance(0.25)
    clock.tool_finished()
    fake.advance(1.0)
    clock.reply_in(audio=False)
    clock.reply_out()
    clock.turn_complete()
    [turn] = finished
    assert turn.tool_ms == pytest.approx(1250, abs=0.5)
    assert turn.reply_in_ms == pytest.approx(2250, abs=0.5)


def test_a_reconnect_inside_the_turn_is_its_gap(timed):
    clock, fake, finished = timed
    clock.outage_began()  # no turn open: not counted
    clock.outage_ended()
    clock.speech_ended("text")
    fake.advance(0.1)
    clock.outage_began()
    fake.advance(0.7)
    clock.outage_ended()
    clock.reply_in(audio=False)
    clock.reply_out()
    clock.turn_complete()
    [turn] = finished
    assert turn.reconnect_gap_ms == pytest.approx(700, abs=0.5)


def test_interrupted_unanswered_and_closed_turns_say_so(timed):
    clock, fake, finished = timed
    clock.speech_ended("text")
    clock.reply_in(audio=False)
    clock.reply_out()
    clock.turn_complete(interrupted=True)
    clock.speech_ended("text")
    clock.turn_complete()  # an empty turn: the model never answered
    clock.speech_ended("text")
    clock.tool_started()
    fake.advance(2)
    clock.close()  # the connection ends mid-turn, a tool still running
    assert [t.outcome for t in finished] == ["interrupted", "unanswered", "unanswered"]
    assert finished[-1].tool_ms == pytest.approx(2000, abs=0.5)


def test_output_with_no_turn_open_is_not_timed(timed):
    clock, _fake, finished = timed
    assert not clock.reply_in(audio=True)  # a greeting: nobody spoke
    clock.reply_out()
    assert clock.playback_started() is None
    clock.close()
    assert finished == []


def test_turn_numbers_go_on_from_the_first_turn_given():
    finished: list[TurnTiming] = []
    clock = TurnClock(on_finished=finished.append, first_turn=8)
    clock.speech_ended("text")
    clock.close()
    assert finished[0].turn == 8


def test_histograms_merge_into_percentiles():
    one = histogram_add([], 90)  # <= 100
    one = histogram_add(one, 450)  # <= 500
    two = histogram_add([], 99_000)  # slower than every bound
    merged = histogram_merge([one, two, []])
    assert sum(merged) == 3
    assert histogram_percentile(merged, 50) == 500
    assert histogram_percentile(merged, 5) == 100
    assert histogram_percentile(merged, 100) == LATENCY_BUCKETS_MS[-1]
    assert histogram_percentile([], 50) is None
