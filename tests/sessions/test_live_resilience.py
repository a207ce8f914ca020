"""Gemini as it really behaves (issue 11), each behaviour through the consumer, the bridge,
the real SDK and the emulator: slow pongs, silent upstreams, stalls, refusals, session
limits and expired handles, usage reported more than once, streamed transcripts, tool calls
from spoken turns, and replay that a real-time VAD hears. TEXT and AUDIO agents."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async

from sessions.models import TranscriptEntry, VoiceSession
from tests.factories import AgentFactory
from tests.sessions.conftest import Client, issue_token, open_client, silence, speak, tone
from voice_platform.live_emulator import audio as emu_audio
from voice_platform.live_emulator import protocol

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live_emulator_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("emulator")
    return {"pace": 20.0, **(marker.kwargs if marker else {})}


@database_sync_to_async
def make_agent(tenant: Any, modality: str = "TEXT", **kwargs: Any) -> Any:
    kwargs.setdefault("output_transcription", modality == "AUDIO")  # the reply in words
    return AgentFactory(tenant=tenant, response_modality=modality, **kwargs)


@database_sync_to_async
def stored(session_id: str) -> tuple[VoiceSession, list[tuple[str, str]]]:
    session = VoiceSession.unscoped.get(pk=session_id)
    entries = TranscriptEntry.unscoped.filter(session=session).order_by("seq")
    return session, list(entries.values_list("role", "text"))


async def start(agent: Any) -> tuple[Client, str]:
    client = await open_client(f"token={await issue_token(agent)}")
    started = await client.until("session.started")
    return client, started["session_id"]


async def close(client: Client) -> None:
    await client.send(type="close")
    await client.until_closed()


async def say(client: Client, text: str) -> None:
    await client.send(type="text", text=text)
    await client.until("turn_complete")


# --- liveness without false alarms ------------------------------------------------------------


@pytest.mark.emulator(pong_delay=(3.0, 3.0))
async def test_slow_pongs_never_reconnect_a_healthy_upstream(alice, live_settings, live_emulator):
    """Pongs take 3 s against a 4.5 s idle timeout: Gemini's 30 s against our 45 s."""
    live_settings.LIVE_PING_INTERVAL = 0.5
    live_settings.LIVE_IDLE_TIMEOUT = 4.5
    agent = await make_agent(alice.tenant)
    client, session_id = await start(agent)
    for word in ("one", "two"):
        await say(client, word)
        await asyncio.sleep(4.0)  # idle, while pings wait 3 s for their pongs
    await close(client)
    record = live_emulator.recorder.sessions[0]
    assert len(live_emulator.recorder.sessions) == 1
    assert record.pings_received >= 10
    assert min(record.pong_delays) >= 3.0
    assert not client.of("session.reconnecting")
    session, _ = await stored(session_id)
    assert session.reconnects == 0
    assert session.reconnect_log == []


@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_a_silent_upstream_is_noticed_within_5_s_when_a_reply_is_due(
    alice, live_settings, live_emulator, modality
):
    agent = await make_agent(alice.tenant, modality, input_transcription=True)
    live_emulator.fail_next(black_hole_at=0.5)  # silent from then on, pongs included
    client, session_id = await start(agent)
    await asyncio.sleep(1.0)
    if modality == "TEXT":
        await client.send(type="text", text="hello")
    else:
        await speak(client)  # the turn ends (a reply is due) when its speech has gone up
    ended = time.monotonic()
    reconnecting = await client.until("session.reconnecting", timeout=10)
    assert time.monotonic() - ended < 5.0
    assert reconnecting["reason"] == "upstream_unresponsive"
    await client.until("session.resumed", timeout=10)
    await client.until("turn_complete", timeout=10)
    await close(client)
    session, entries = await stored(session_id)
    assert [entry["cause"] for entry in session.reconnect_log] == ["upstream_unresponsive"]
    assert entries[-1][0] == "model"
    assert entries[-1][1].startswith("You said:")


async def test_a_silent_upstream_is_noticed_within_the_idle_timeout_when_nothing_is_due(
    alice, live_settings, live_emulator
):
    live_settings.LIVE_IDLE_TIMEOUT = 3.0
    agent = await make_agent(alice.tenant, "AUDIO")
    live_emulator.fail_next(black_hole_at=0.2)
    client, _session_id = await start(agent)
    began = time.monotonic()
    reconnecting = await client.until("session.reconnecting", timeout=10)
    assert reconnecting["reason"] == "upstream_unresponsive"
    assert 2.5 < time.monotonic() - began < 4.5
    await client.until("session.resumed", timeout=10)
    await close(client)


def keepalive_args(client: Any) -> dict[str, Any]:
    return dict(client._api_client._http_options.async_client_args or {})


async def test_the_sdk_keepalive_is_set_explicitly(alice, live_settings, live_emulator):
    from sessions.relay.client import live_client

    live_client.cache_clear()
    agent = await make_agent(alice.tenant)
    client, _ = await start(agent)
    await close(client)
    cached = live_client.cache_info()
    assert cached.currsize >= 1
    made = live_client(
        "test-key",
        live_settings.LIVE_API_BASE_URL,
        live_settings.LIVE_API_VERSION,
        live_settings.LIVE_API_CA_FILE,
        deflate=live_settings.LIVE_UPSTREAM_DEFLATE,
        keepalive=(live_settings.LIVE_KEEPALIVE_INTERVAL, live_settings.LIVE_KEEPALIVE_TIMEOUT),
    )
    assert live_client.cache_info().hits >= 1, "the bridge built exactly this client"
    args = keepalive_args(made)
    assert (args["ping_interval"], args["ping_timeout"]) == (15.0, 40.0)


# --- stalls -----------------------------------------------------------------------------------


async def ask(client: Client, modality: str, text: str) -> None:
    if modality == "TEXT":
        await client.send(type="text", text=text)
    else:
        await speak(client)


@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
@pytest.mark.parametrize("kind", ["empty_turns", "silent_turns"])
async def test_a_stalled_turn_is_asked_again_and_answered_once(
    alice, live_settings, live_emulator, modality, kind
):
    live_settings.LIVE_REPLY_TIMEOUT = 2.0
    agent = await make_agent(alice.tenant, modality, input_transcription=True)
    live_emulator.fail_next(**{kind: 1})  # the first reply turn on this connection stalls
    client, session_id = await start(agent)
    await ask(client, modality, "hello")
    warning = await client.until("warning", timeout=10)
    assert (warning["code"], warning["recovering"]) == ("reply_stalled", True)
    reconnecting = await client.until("session.reconnecting")
    assert reconnecting["reason"] == "stall"
    await client.until("session.resumed")
    await client.until("turn_complete", timeout=10)
    await close(client)
    _first, second = live_emulator.recorder.sessions[:2]
    assert not second.faults.empty_turns
    assert not second.faults.silent_turns
    session, entries = await stored(session_id)
    assert [entry["cause"] for entry in session.reconnect_log] == ["stall"]
    assert [role for role, _ in entries] == ["user", "model"], "the turn once, answered once"
    assert session.turns == 1


async def test_a_turn_that_stalls_every_time_is_given_up_and_the_call_goes_on(
    alice, live_settings, live_emulator
):
    for _ in range(4):  # the first try and all three recoveries stall
        live_emulator.fail_next(empty_turns=1)
    agent = await make_agent(alice.tenant)
    client, _session_id = await start(agent)
    await client.send(type="text", text="hello")
    warnings = []
    while len(warnings) < 4:
        warnings.append(await client.until("warning", timeout=10))
    assert [w["recovering"] for w in warnings] == [True, True, True, False]
    await say(client, "still there?")
    assert client.texts("text").endswith("You said: still there?")
    await close(client)
    assert len(live_emulator.recorder.sessions) == 4


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_a_quota_refusal_at_start_is_a_quick_busy_error_with_a_retry_hint(
    alice, live_settings, live_emulator, modality
):
    live_emulator.fail_next(refuse_code=1011, refuse_reason=protocol.REASON_QUOTA)
    agent = await make_agent(alice.tenant, modality)
    began = time.monotonic()
    client = await open_client(f"token={await issue_token(agent)}")
    code = await client.until_closed()
    assert time.monotonic() - began < 2.0
    assert code == 4013
    error = client.of("error")[0]
    assert error["code"] == "busy"
    assert 10 <= error["retry_after"] <= 20
    assert client.of("session.ended")[0]["reason"] == "upstream_busy"
    assert len(live_emulator.recorder.sessions) == 1, "no retry storm"


@pytest.mark.emulator(max_concurrent_sessions=2)
async def test_over_quota_sessions_are_refused_busy_and_the_others_keep_talking(
    alice, live_settings, live_emulator
):
    agent = await make_agent(alice.tenant)
    first, _ = await start(agent)
    second, _ = await start(agent)
    third = await open_client(f"token={await issue_token(agent)}")
    assert await third.until_closed() == 4013
    await say(first, "one")
    await say(second, "two")
    await close(first)
    await close(second)


@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_a_quota_refusal_on_reconnect_is_retried_with_backoff(
    alice, live_settings, live_emulator, modality
):
    agent = await make_agent(alice.tenant, modality, input_transcription=True)
    client, session_id = await start(agent)
    await ask(client, modality, "one")
    await client.until("turn_complete")
    live_emulator.fail_next(refuse_code=1011, refuse_reason=protocol.REASON_QUOTA)
    live_emulator.emulator.abort_connections()
    await client.until("session.resumed", timeout=15)
    await ask(client, modality, "two")
    await client.until("turn_complete", timeout=10)
    await close(client)
    assert len(live_emulator.recorder.sessions) == 3
    session, _ = await stored(session_id)
    assert session.turns == 2
    assert session.status == "ended"


async def test_operation_not_implemented_1008_is_transient(alice, live_settings, live_emulator):
    agent = await make_agent(alice.tenant)
    live_emulator.fail_next(
        close_after=1, close_code=1008, close_reason=protocol.REASON_NOT_IMPLEMENTED
    )
    client, _session_id = await start(agent)
    await client.send(type="text", text="hello")
    reconnecting = await client.until("session.reconnecting")
    assert reconnecting["reason"] == "upstream_not_implemented"
    await client.until("turn_complete", timeout=10)
    await close(client)


async def test_1007_brings_its_real_reason_to_the_client(alice, live_settings, live_emulator):
    live_emulator.fail_next(refuse_code=1007, refuse_reason=protocol.REASON_KEY_EXPIRED)
    agent = await make_agent(alice.tenant)
    client = await open_client(f"token={await issue_token(agent)}")
    await client.until_closed()
    error = client.of("error")[0]
    assert error["code"] == "upstream_rejected"
    assert "API key expired" in error["message"]


# --- calls longer than the upstream allows ----------------------------------------------------


async def recap_after(client: Client) -> str:
    """What the model says it heard earlier: text, or the transcript of its speech."""
    kind = "transcript.output" if client.of("transcript.output") else "text"
    before = len(client.texts(kind))
    await say(client, "recap")
    kind = "transcript.output" if client.of("transcript.output") else "text"
    return client.texts(kind)[before:]


@pytest.mark.emulator(session_limit_audio=3.0)
@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_the_session_limit_is_recognised_and_the_call_goes_on_seeded(
    alice, live_settings, live_emulator, modality
):
    # Recognised by its close; the age rule (a 1011 at the limit) is in the unit tests.
    agent = await make_agent(
        alice.tenant, modality, input_transcription=True, output_transcription=True
    )
    client, session_id = await start(agent)
    await say(client, "alpha")
    await say(client, "beta")
    reconnecting = await client.until("session.reconnecting", timeout=10)
    assert reconnecting["reason"] == "session_limit"
    resumed = await client.until("session.resumed", timeout=10)
    assert resumed["fresh_context"] is True
    recap = await recap_after(client)
    assert "alpha" in recap, "the new session was told the call so far"
    assert "beta" in recap
    await close(client)
    fresh = live_emulator.recorder.sessions[-1]
    assert not fresh.resumed
    session, entries = await stored(session_id)
    assert session.reconnect_log[0]["cause"] == "session_limit"
    assert session.reconnect_log[0]["fresh_context"] is True
    assert session.status == "ended"
    assert [text for _, text in entries][:4] == [
        "alpha", "You said: alpha", "beta", "You said: beta"
    ]  # fmt: skip


async def test_an_expired_handle_continues_as_a_fresh_seeded_session(
    alice, live_settings, live_emulator
):
    agent = await make_agent(alice.tenant)
    client, session_id = await start(agent)
    await say(client, "alpha")
    # The resume is refused as Gemini refuses an expired or unknown handle.
    live_emulator.fail_next(refuse_code=1008, refuse_reason=protocol.REASON_BAD_HANDLE)
    live_emulator.emulator.abort_connections()
    reconnecting = await client.until("session.reconnecting")
    assert reconnecting["reason"] == "connection_lost"
    resumed = await client.until("session.resumed", timeout=15)
    assert resumed["fresh_context"] is True
    assert "alpha" in await recap_after(client)
    await close(client)
    refused, fresh = live_emulator.recorder.sessions[1:3]
    assert refused.close_code == 1008
    assert not fresh.client_setup["sessionResumption"].get("handle")
    session, _ = await stored(session_id)
    assert session.reconnect_log[0]["cause"] == "connection_lost"
    assert session.reconnect_log[0]["fresh_context"] is True


async def test_an_agent_allowed_past_the_session_limit_gets_compression(
    alice, live_settings, live_emulator
):
    long_agent = await make_agent(alice.tenant, max_session_seconds=3600)
    short_agent = await make_agent(alice.tenant, max_session_seconds=600)
    for agent in (long_agent, short_agent):
        client, _ = await start(agent)
        await close(client)
    long_setup, short_setup = (r.client_setup for r in live_emulator.recorder.sessions)
    assert "slidingWindow" in long_setup["contextWindowCompression"]
    assert "contextWindowCompression" not in short_setup


# --- what Gemini streams ----------------------------------------------------------------------


@pytest.mark.emulator(usage_updates_per_turn=3)
async def test_usage_reported_more_than_once_per_turn_is_counted_once(
    alice, live_settings, live_emulator
):
    agent = await make_agent(alice.tenant)
    client, session_id = await start(agent)
    await say(client, "hello there")
    await say(client, "and again")
    await close(client)
    reported = [m["usageMetadata"] for m in live_emulator.recorder.sessions[0].sent
                if "usageMetadata" in m]  # fmt: skip
    sent = live_emulator.recorder.sessions[0].sent
    finals = [m["usageMetadata"] for m in sent if "usageMetadata" in m
              and m.get("serverContent", {}).get("turnComplete")]  # fmt: skip
    assert len(reported) >= 4
    assert len(finals) == 2
    session, _ = await stored(session_id)
    assert session.total_tokens == sum(u["totalTokenCount"] for u in finals)
    assert session.prompt_tokens == sum(u["promptTokenCount"] for u in finals)


@pytest.mark.emulator(input_transcript_streaming=True, input_transcript_lag=0.3, pace=1.0)
async def test_streamed_lagging_input_transcripts_are_stored_whole_before_the_reply(
    alice, live_settings, live_emulator
):
    agent = await make_agent(alice.tenant, "AUDIO", input_transcription=True)
    client, session_id = await start(agent)
    await speak(client, speech_ms=1200)
    await client.until("turn_complete", timeout=15)
    await close(client)
    record = live_emulator.recorder.sessions[0]
    heard = "".join(record.input_transcripts)
    assert len(client.of("transcript.input")) >= 2, "pieces, not one transcript"
    assert client.texts("transcript.input") == heard
    _, entries = await stored(session_id)
    assert entries[0] == ("user", heard.strip())
    assert entries[1][0] == "model"


@pytest.mark.emulator(
    tool_preamble=True, audio_tool_calls={880: 'call get_current_time {"timezone": "UTC"}'}
)
async def test_a_tool_call_from_a_spoken_turn_after_some_speech_runs_once(
    alice, live_settings, live_emulator, tools_ready
):
    from tests.sessions.test_bridge_tools import agent_with, records

    agent = await agent_with(
        alice.tenant, {"get_current_time": {}}, modality="AUDIO", input_transcription=True
    )
    client, _session_id = await start(agent)
    for _ in range(6):
        await client.send_audio(tone(100, freq=880.0))
    for _ in range(7):
        await client.send_audio(silence(100))
    await client.until("tool.finished", timeout=15)
    await client.until("turn_complete", timeout=15)
    await close(client)
    first_audio = client.order.index("audio")
    assert first_audio < client.order.index("tool.started"), "some speech came first"
    record = live_emulator.recorder.sessions[0]
    assert [c["name"] for c in record.tool_calls] == ["get_current_time"]
    assert len(record.tool_responses) == 1
    (stored_call,) = await records()
    assert stored_call.status == "succeeded"


# --- replay that a VAD hears ------------------------------------------------------------------


@pytest.mark.emulator(realtime_audio_buffer=1.0, input_transcript_streaming=False)
async def test_an_unacknowledged_audio_turn_is_replayed_at_real_time_and_heard(
    alice, live_settings, live_emulator
):
    agent = await make_agent(alice.tenant, "AUDIO", input_transcription=True)
    live_emulator.fail_next(reply_delay=3.0)  # the turn is heard, then the connection dies
    client, _session_id = await start(agent)
    for _ in range(20):  # 2 s of speech, streamed at real time like a microphone
        await client.send_audio(tone(100))
        await asyncio.sleep(0.1)
    for _ in range(8):
        await client.send_audio(silence(100))
        await asyncio.sleep(0.1)
    live_emulator.emulator.abort_connections()
    await client.until("session.resumed", timeout=15)
    await client.until("turn_complete", timeout=15)
    await close(client)
    replayed = live_emulator.recorder.sessions[1]
    assert replayed.audio_discarded_seconds == 0.0, "paced: nothing arrived as a burst"
    assert replayed.input_transcripts == [emu_audio.describe(tone(2000))]


# --- resume refused while the old socket is open --------------------------------------------


@pytest.mark.emulator(refuse_resume_while_open=True, dead_peer_timeout=15.0)
@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_a_resume_refused_while_the_dead_socket_counts_as_open_is_retried(
    alice, live_settings, live_emulator, modality
):
    """A black hole is aborted; the service still holds the old socket for a while and
    refuses the resume with 1011; the backoff outlasts it (or the call goes on fresh)."""
    agent = await make_agent(alice.tenant, modality, input_transcription=True)
    live_emulator.fail_next(black_hole_at=2.5)
    client, session_id = await start(agent)
    began = time.monotonic()
    await ask(client, modality, "before")  # a handle: the reconnect is a resume
    await client.until("turn_complete")
    await asyncio.sleep(max(0.0, began + 2.7 - time.monotonic()))  # dark by now
    await ask(client, modality, "after the black hole")
    await client.until("session.resumed", timeout=20)
    await client.until("turn_complete", timeout=15)
    await close(client)
    refused = [r for r in live_emulator.recorder.sessions if refused_while_open(r)]
    assert refused, "the service refused at least one resume while the old socket was open"
    session, entries = await stored(session_id)
    assert session.status == "ended"
    assert entries[-1][0] == "model"


@pytest.mark.emulator(refuse_resume_while_open=True, dead_peer_timeout=5.0)
async def test_a_stall_closes_the_old_socket_properly_so_the_resume_is_not_refused(
    alice, live_settings, live_emulator
):
    live_emulator.fail_next(empty_turns=1)
    agent = await make_agent(alice.tenant)
    client, _ = await start(agent)
    await say_after_stall(client)
    await close(client)
    first = live_emulator.recorder.sessions[0]
    assert first.closed_by == "client"
    assert first.close_code == 1000, "closed, not dropped"
    assert not any(refused_while_open(r) for r in live_emulator.recorder.sessions)


def refused_while_open(record: Any) -> bool:
    return (
        record.closed_by == "server"
        and record.close_code == 1011
        and record.close_reason == protocol.REASON_RESUME_WHILE_OPEN
        and not record.messages
    )


async def say_after_stall(client: Client) -> None:
    await client.send(type="text", text="hello")
    await client.until("session.resumed", timeout=10)
    await client.until("turn_complete", timeout=10)


async def test_a_client_resume_whose_handle_is_refused_goes_on_seeded(
    alice, live_settings, live_emulator
):
    """The client came back on another connection (another process, say); the stored
    handle is refused there, so the new bridge's very first upstream session is fresh and
    must be told the call so far."""
    agent = await make_agent(alice.tenant)
    first, _ = await start(agent)
    started = first.of("session.started")[0]
    await say(first, "alpha")
    await first.comm.disconnect()  # dropped without "close": resumable
    await asyncio.sleep(0.3)
    live_emulator.fail_next(refuse_code=1008, refuse_reason=protocol.REASON_BAD_HANDLE)
    second = await open_client(f"resume={started['resume_token']}")
    await second.until("session.started", timeout=15)
    assert "alpha" in await recap_after(second)
    await close(second)
    refused, fresh = live_emulator.recorder.sessions[-2:]
    assert refused.close_code == 1008
    assert not fresh.client_setup["sessionResumption"].get("handle")


async def test_a_deadline_expired_close_resumes_like_a_connection_end(
    alice, live_settings, live_emulator
):
    """Missed the goAway (or none came): the 10-minute end's 1011 "Deadline expired"."""
    agent = await make_agent(alice.tenant)
    live_emulator.fail_next(close_after=2, close_code=1011, close_reason=protocol.REASON_DEADLINE)
    client, session_id = await start(agent)
    await say(client, "one")
    await client.send(type="text", text="two")
    reconnecting = await client.until("session.reconnecting")
    assert reconnecting["reason"] == "connection_deadline"
    resumed = await client.until("session.resumed")
    assert resumed["fresh_context"] is False
    await client.until("turn_complete")
    await close(client)
    session, _ = await stored(session_id)
    assert [entry["cause"] for entry in session.reconnect_log] == ["connection_deadline"]


@pytest.mark.emulator(pace=1.0)
async def test_an_upstream_silent_in_the_middle_of_the_models_turn_is_noticed_within_5_s(
    alice, live_settings, live_emulator
):
    agent = await make_agent(alice.tenant, "AUDIO")
    live_emulator.fail_next(black_hole_at=1.5)
    client, _ = await start(agent)
    # A spoken reply of about 3 s (60 ms per character at real time), cut at 1.5 s.
    await client.send(type="text", text="a sentence long enough to speak for seconds")
    while len(client.audio) < 5:
        await client.recv()
    cut = time.monotonic() + max(0.0, 1.5 - 0.2)
    reconnecting = await client.until("session.reconnecting", timeout=10)
    assert time.monotonic() - cut < 5.0
    assert reconnecting["reason"] in ("upstream_unresponsive", "stall")
    await client.until("turn_complete", timeout=15)
    await close(client)


@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_a_turn_answered_just_before_a_drop_is_not_asked_again(
    alice, live_settings, live_emulator, modality
):
    """The answer came, its handle did not: the resume goes back to the handle before it.
    The answered turn is told as context (the model remembers it), not asked again (the
    user would hear the answer twice)."""
    agent = await make_agent(
        alice.tenant, modality, input_transcription=True, output_transcription=True
    )
    live_emulator.fail_next(drop_before_handle=2)
    client, session_id = await start(agent)
    await ask(client, modality, "alpha")
    await client.until("turn_complete")
    await ask(client, modality, "beta")
    await client.until("turn_complete")
    await client.until("session.resumed", timeout=10)
    recap = await recap_after(client)
    await close(client)
    assert len(client.of("turn_complete")) == 3, "beta answered once, then the recap"
    resumed = live_emulator.recorder.sessions[1]
    assert resumed.resumed
    asked = [m["clientContent"] for m in resumed.messages if "clientContent" in m]
    assert not [c for c in asked if c.get("turnComplete") and "beta" in str(c)], "not asked"
    assert resumed.input_transcripts == [], "no speech asked again"
    heard = live_emulator.recorder.sessions[0].input_transcripts
    beta = "beta" if modality == "TEXT" else heard[-1]
    assert beta in recap, "the model remembers the answered turn"
    session, entries = await stored(session_id)
    assert session.turns == 3
    assert [role for role, _ in entries] == ["user", "model"] * 3


@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_a_session_that_ends_closes_its_upstream_with_1000_not_1011(
    alice, live_settings, live_emulator, modality
):
    """The bridge stops the upstream by cancelling its task; websockets closes a connection
    left by an exception (the cancellation too) with 1011, which reads as our crash on the
    service's side. A normal end says 1000."""
    agent = await make_agent(alice.tenant, modality, input_transcription=True)
    client, _ = await start(agent)
    await ask(client, modality, "hello")
    await client.until("turn_complete")
    await close(client)
    record = live_emulator.recorder.last()
    async with asyncio.timeout(5):
        await record.closed.wait()
    assert (record.closed_by, record.close_code) == ("client", 1000)
