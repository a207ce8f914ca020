"""The pure parts of upstream resilience: backoff, budget, close causes, liveness, pacing,
the speech end estimate and replay trimming."""

from __future__ import annotations

import math
import random

import pytest

from sessions.relay.backoff import Backoff, ReconnectBudget
from sessions.relay.close_causes import Next, classify_close
from sessions.relay.liveness import Liveness
from sessions.relay.pacer import AudioPacer
from sessions.relay.speech import SpeechDetector, SpeechEvent, is_silent, rms
from sessions.uplink import ItemKind, Uplink, UplinkItem
from voice_client import audio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tone(ms: int, amplitude: int = 8000) -> bytes:
    # sin(i / 5) per sample at 16 kHz: 16000 / (10 pi) Hz.
    return audio.tone(ms / 1000, 16000 / (10 * math.pi), amplitude / 32767)


def silence(ms: int) -> bytes:
    return audio.silence(ms / 1000)


# --- backoff and budget -----------------------------------------------------------------------


def test_backoff_is_full_jitter_within_a_growing_capped_ceiling():
    random.seed(7)
    backoff = Backoff(base=1.5, factor=2, cap=15)
    for attempt, ceiling in [(0, 1.5), (1, 3.0), (2, 6.0), (3, 12.0), (4, 15.0), (9, 15.0)]:
        delays = [backoff.delay(attempt) for _ in range(2000)]
        assert 0 <= min(delays) < 0.05 * ceiling  # full jitter reaches down to zero
        assert 0.95 * ceiling < max(delays) <= ceiling


def test_backoff_spreads_two_hundred_first_reconnects_over_more_than_a_second():
    random.seed(11)
    delays = [Backoff().delay(0) for _ in range(200)]
    assert max(delays) - min(delays) > 1.0


def test_backoff_scaled_divides_its_durations():
    assert Backoff(base=1.5, cap=15).scaled(10) == Backoff(base=0.15, cap=1.5)


def test_reconnect_budget_allows_limit_per_window_then_refuses_until_it_slides():
    clock = Clock()
    budget = ReconnectBudget(3, 60, clock=clock)
    assert [budget.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 59.9
    assert not budget.take()
    clock.now += 0.2
    assert budget.take()


# --- close causes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "kwargs", "cause", "next_"),
    [
        (1007, "API key expired. Please renew the API key.", {}, "upstream_rejected", Next.FAIL),
        (1008, "API key not valid. Please pass a valid API key.", {},
         "upstream_rejected", Next.FAIL),
        (1008, "Operation is not implemented, or supported, or enabled.", {},
         "upstream_not_implemented", Next.RESUME),
        (1008, "Session resumption handle is invalid or has expired.",
         {"resuming": True, "at_setup": True}, "handle_rejected", Next.FRESH),
        (1008, "Something new about the request.", {"resuming": True, "at_setup": True},
         "handle_rejected", Next.FRESH),
        (1008, "API key not valid.", {"resuming": True, "at_setup": True},
         "upstream_rejected", Next.FAIL),
        (1011, "RESOURCE_EXHAUSTED: Maximum concurrent sessions", {}, "upstream_quota", Next.BUSY),
        (1011, "Deadline expired before operation could complete.", {},
         "connection_deadline", Next.RESUME),
        (1011, "Session duration limit reached.", {}, "session_limit", Next.FRESH),
        (1011, "Internal error encountered.", {"session_age": 899.0, "session_limit": 900.0},
         "session_limit", Next.FRESH),
        (1011, "Internal error encountered.", {"session_age": 300.0, "session_limit": 900.0},
         "upstream_closed_1011", Next.RESUME),
        (1006, "Abnormal closure.", {}, "connection_lost", Next.RESUME),
        (1000, "", {}, "upstream_closed_1000", Next.RESUME),
    ],
)  # fmt: skip
def test_close_causes_are_classified_by_code_and_reason(code, reason, kwargs, cause, next_):
    args = {"resuming": False, "at_setup": False, **kwargs}
    ending = classify_close(code, reason, **args)
    assert (ending.cause, ending.next) == (cause, next_)
    assert ending.detail == reason


# --- liveness ---------------------------------------------------------------------------------


def liveness(clock: Clock) -> Liveness:
    return Liveness(reply_timeout=4, idle_timeout=45, reply_retries=2, clock=clock)


def test_liveness_slow_pongs_never_alarm_while_nothing_is_due():
    clock = Clock()
    lv = liveness(clock)
    for _ in range(20):  # a pong every 30 s, for ten minutes
        clock.now += 30
        assert lv.verdict(clock.now, pinging=True) is None
        lv.heard_pong()


def test_liveness_total_silence_is_dead_after_the_idle_timeout_only_when_pinging():
    clock = Clock()
    lv = liveness(clock)
    clock.now += 44
    assert lv.verdict(clock.now, pinging=True) is None
    clock.now += 2
    assert lv.verdict(clock.now, pinging=True) == "upstream_unresponsive"
    assert lv.verdict(clock.now, pinging=False) is None  # no pings: silence proves nothing


def test_liveness_a_due_reply_that_does_not_come_is_noticed_after_the_reply_timeout():
    clock = Clock()
    lv = liveness(clock)
    lv.expect_reply()
    clock.now += 3.9
    assert lv.verdict(clock.now, pinging=True) is None
    clock.now += 0.2
    assert lv.verdict(clock.now, pinging=True) == "upstream_unresponsive_due"
    lv.heard_pong()  # the socket answers, the model does not
    clock.now += 0.1
    assert lv.verdict(clock.now, pinging=True) == "stall"


def test_liveness_a_streaming_model_turn_is_alive_and_silence_inside_it_is_not():
    clock = Clock()
    lv = liveness(clock)
    lv.expect_reply()
    for _ in range(10):
        clock.now += 1
        lv.heard_message()
        lv.model_output()
        assert lv.verdict(clock.now, pinging=True) is None
    clock.now += 4.1
    assert lv.verdict(clock.now, pinging=True) == "upstream_unresponsive_due"


def test_liveness_nothing_is_due_while_a_tool_runs_and_the_answer_makes_a_reply_due():
    clock = Clock()
    lv = liveness(clock)
    lv.expect_reply()
    lv.tool_calls(1)
    clock.now += 30
    assert lv.verdict(clock.now, pinging=True) is None
    lv.tool_responses_sent(1)
    clock.now += 1
    lv.heard_pong()
    clock.now += 3.2
    assert lv.verdict(clock.now, pinging=True) == "stall"


def test_liveness_an_empty_turn_complete_is_a_stall_recovered_twice_then_given_up():
    clock = Clock()
    lv = liveness(clock)
    outcomes = []
    for _ in range(3):
        lv.reset()
        lv.expect_reply()
        lv.turn_complete()
        outcomes.append((lv.stall_detected, lv.stall_given_up))
    assert outcomes == [(True, False), (True, False), (False, True)]
    lv.reset()
    lv.expect_reply()
    lv.model_output()
    lv.turn_complete()
    assert (lv.stall_detected, lv.stall_given_up, lv.recoveries) == (False, False, 0)


def test_liveness_an_interrupted_turn_is_not_a_stall():
    clock = Clock()
    lv = liveness(clock)
    lv.expect_reply(speech_ended_at=None)
    lv.interrupted()
    lv.turn_complete()
    assert not lv.stall_detected


def test_liveness_speech_end_after_the_reply_began_makes_nothing_due():
    clock = Clock()
    lv = liveness(clock)
    speech_end = clock.now
    clock.now += 0.5
    lv.model_output()  # the server ended the turn first and answers
    lv.expect_reply(speech_ended_at=speech_end)
    lv.turn_complete()
    assert not lv.stall_detected
    assert not lv.reply_due


def test_liveness_a_pause_in_speech_is_not_the_end_of_the_turn():
    clock = Clock()
    lv = liveness(clock)
    lv.expect_reply(speech_ended_at=clock.now)
    lv.speech_resumed()
    clock.now += 10
    assert lv.verdict(clock.now, pinging=False) is None


def test_liveness_recoveries_of_one_turn_are_bounded():
    clock = Clock()
    lv = liveness(clock)
    lv.expect_reply()
    assert [lv.take_recovery() for _ in range(3)] == [True, True, False]
    assert not lv.reply_due  # given up: the turn is no longer awaited


# --- speech end estimate, pacing --------------------------------------------------------------


def test_rms_and_silence():
    assert rms(b"") == 0.0
    assert rms(silence(20)) == 0.0
    assert rms(tone(20)) > 5000
    assert is_silent(silence(100))
    assert not is_silent(tone(100))


def test_speech_detector_marks_start_and_end_in_audio_time():
    detector = SpeechDetector(silence_ms=500)
    events = [detector.feed(frame) for frame in [silence(100), tone(100), tone(100)]]
    assert events == [None, SpeechEvent.START, None]
    events = [detector.feed(silence(100)) for _ in range(5)]
    assert events == [None, None, None, None, SpeechEvent.END]
    assert detector.feed(silence(100)) is None


def test_pacer_lets_real_time_through_and_holds_a_burst():
    clock = Clock()
    pacer = AudioPacer(lead=0.3, clock=clock)
    frame = 3200  # 100 ms
    for _ in range(10):  # live: one frame every 100 ms
        assert pacer.wait_for(frame) == 0
        pacer.sent(frame)
        clock.now += 0.1
    waits = []
    for _ in range(10):  # a burst of one second
        waits.append(pacer.wait_for(frame))
        pacer.sent(frame)
    assert waits[:3] == [0, 0, 0]
    assert waits[-1] == pytest.approx(0.6)


# --- replay trimming --------------------------------------------------------------------------


def frames(*parts: bytes) -> list[UplinkItem]:
    return [UplinkItem(ItemKind.AUDIO, part) for part in parts]


def test_replay_leaves_out_silence_before_the_speech_but_a_short_prefix():
    uplink = Uplink()
    items = frames(*[silence(100)] * 20, tone(100), silence(100))
    for item in items:
        uplink.put(item)
        uplink.sent(item)
    uplink.replay_unacknowledged()
    assert list(uplink.replay) == items[17:]  # 300 ms of prefix, the speech, what followed


def test_replay_of_silence_only_sends_no_audio():
    uplink = Uplink()
    for item in frames(*[silence(100)] * 5):
        uplink.put(item)
        uplink.sent(item)
    uplink.replay_unacknowledged()
    assert not uplink.replay
    assert not uplink.replays_audio()


def test_live_input_queues_behind_a_replay_without_being_dropped():
    uplink = Uplink(max_pending_audio=2 * 32_000)
    speech = frames(*[tone(100)] * 50)  # 5 s of speech to replay
    for item in speech:
        uplink.put(item)
        uplink.sent(item)
    uplink.replay_unacknowledged()
    for item in frames(*[tone(100)] * 60):  # 6 s of live speech meanwhile
        uplink.put(item)
    assert uplink.dropped_audio_frames == 0
    for item in frames(*[tone(100)] * 20):  # past replay + 2 s: the oldest goes
        uplink.put(item)
    assert uplink.dropped_audio_frames == 10


def test_replay_current_turn_leaves_out_completed_turns_and_counts_them_saved():
    uplink = Uplink()
    answered, asking = frames(tone(100)), frames(tone(200))
    for item in answered:
        uplink.put(item)
        uplink.sent(item)
    uplink.turn_complete()  # answered, but no handle came before the connection ended
    for item in asking:
        uplink.put(item)
        uplink.sent(item)
    uplink.replay_current_turn()
    assert list(uplink.replay) == asking
    assert uplink.acked_turns == 1
    assert uplink.turn_position == 1


# --- review fixes -------------------------------------------------------------------------


def test_liveness_a_turn_only_our_estimate_vouches_for_gets_one_recovery():
    clock = Clock()
    lv = liveness(clock)
    lv.expect_reply(speech_ended_at=clock.now - 0.5, confirmed=False)
    assert [lv.take_recovery() for _ in range(2)] == [True, False]
    lv.expect_reply(speech_ended_at=clock.now - 0.5, confirmed=False)
    lv.speech_heard()  # the service transcribed it: a real turn
    assert [lv.take_recovery() for _ in range(3)] == [True, True, False]


def test_liveness_recoveries_end_only_when_the_turn_is_answered():
    """Output or a tool call on the way (the model asks its tool again after each replay)
    does not reset them; a completed reply does."""
    clock = Clock()
    lv = liveness(clock)
    lv.expect_reply()
    assert lv.take_recovery()
    lv.model_output()
    lv.tool_calls(1)
    lv.tool_responses_sent(1)
    assert lv.take_recovery()
    assert not lv.take_recovery(), "two recoveries of this turn were spent"
    lv.expect_reply()
    lv.model_output()
    lv.turn_complete()
    assert lv.recoveries == 0


def test_liveness_cancelled_tool_calls_are_no_longer_awaited():
    clock = Clock()
    lv = liveness(clock)
    lv.tool_calls(1)
    lv.tool_calls_cancelled(1)
    lv.expect_reply()
    clock.now += 4.1
    assert lv.verdict(clock.now, pinging=True) == "upstream_unresponsive_due"


def test_liveness_silent_tool_answers_make_no_reply_due():
    clock = Clock()
    lv = liveness(clock)
    lv.tool_calls(1)
    lv.tool_responses_sent(1, reply_expected=False)
    clock.now += 10
    assert lv.verdict(clock.now, pinging=True) is None


def test_liveness_next_check_is_the_earliest_deadline():
    clock = Clock()
    lv = liveness(clock)
    assert lv.next_check(clock.now, pinging=True) == pytest.approx(clock.now + 45, abs=0.01)
    lv.expect_reply()
    assert lv.next_check(clock.now, pinging=True) == pytest.approx(clock.now + 4, abs=0.01)


def test_close_deadline_expired_is_the_connection_end_whatever_the_session_age():
    ending = classify_close(
        1011, "Deadline expired before operation could complete.", resuming=False,
        at_setup=False, session_age=1200.0, session_limit=900.0,
    )  # fmt: skip
    assert ending.cause == "connection_deadline"
    assert classify_close(
        1011, "Internal error encountered.", resuming=False, at_setup=False,
        session_age=1200.0, session_limit=0.0,
    ).next is Next.RESUME  # fmt: skip


def test_replay_keeps_a_quiet_talkers_turn():
    uplink = Uplink()
    quiet = frames(*[tone(100, amplitude=450)] * 10)  # about -40 dBFS: speech all the same
    for item in quiet:
        uplink.put(item)
        uplink.sent(item)
    uplink.replay_unacknowledged()
    assert list(uplink.replay) == quiet
