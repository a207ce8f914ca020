"""Dropping the connection around a tool call: `drop_after_tool_call`, `_tool_response`.

What a client must survive to give a tool call exactly one effect: the connection ends
(a) right after the model's `toolCall`, (b) right after the client's `toolResponse`, or
(c) while a slow tool runs. Handles are not resumable while a call is pending, so the
client resumes from before the user's turn, repeats it, and the model asks again with a
new call id.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from google.genai import errors, types

from voice_platform.live_emulator.faults import Faults
from voice_platform.live_emulator.session import DROP_TIMER_TASK
from voice_platform.live_emulator.testing import RunningEmulator

from .helpers import audio_of, flags, next_message, output_transcript, send_text, text_of, turn

WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Weather in a city",
    parameters=types.Schema(
        type="OBJECT", properties={"city": types.Schema(type="STRING")}, required=["city"]
    ),
)
CALL = 'call get_weather {"city": "Paris"}'
ANSWER = {"temp_c": 21}
REPLY = 'Result of get_weather: {"temp_c":21}'

MODES = [
    pytest.param("TEXT", True, id="text-resumable"),
    pytest.param("TEXT", False, id="text"),
    pytest.param("AUDIO", True, id="audio-resumable"),
    pytest.param("AUDIO", False, id="audio"),
]


def live_config(
    modality: str, *, resumable: bool, handle: str | None = None, **faults: object
) -> types.LiveConnectConfig:
    """Tools declared; faults (if any) for this connection only, through the SDK's headers."""
    return types.LiveConnectConfig(
        response_modalities=[modality],
        output_audio_transcription=(
            types.AudioTranscriptionConfig() if modality == "AUDIO" else None
        ),
        tools=[types.Tool(function_declarations=[WEATHER])],
        session_resumption=types.SessionResumptionConfig(handle=handle) if resumable else None,
        http_options=(
            types.HttpOptions(headers=RunningEmulator.faults_header(**faults)) if faults else None
        ),
    )


def said(modality: str, messages: list[types.LiveServerMessage]) -> str:
    """The model's words: its text, or the transcript of its speech."""
    return text_of(messages) if modality == "TEXT" else output_transcript(messages)


async def answer(session, call: types.FunctionCall) -> None:
    await session.send_tool_response(
        function_responses=[types.FunctionResponse(id=call.id, name=call.name, response=ANSWER)]
    )


async def greet(session) -> str:
    """One plain turn; returns the resumable handle issued after it."""
    await send_text(session, "hello")
    await turn(session)
    update = (await next_message(session)).session_resumption_update
    assert update is not None
    assert update.resumable
    assert update.new_handle
    return update.new_handle


async def receive_call(session) -> types.FunctionCall:
    message = await next_message(session)
    assert message.tool_call is not None, message
    (call,) = message.tool_call.function_calls
    return call


async def until_dropped(
    session, within: float = 5.0
) -> tuple[list[types.LiveServerMessage], errors.APIError, float]:
    """Every message received until the connection fails, the failure, and when it came."""
    received: list[types.LiveServerMessage] = []

    async def collect() -> None:
        while True:  # receive() stops at each turnComplete; keep reading past it
            async for message in session.receive():
                received.append(message)

    with pytest.raises(errors.APIError) as excinfo:
        await asyncio.wait_for(collect(), within)
    return received, excinfo.value, time.monotonic()


async def ask_again(
    emulator: RunningEmulator,
    client,
    modality: str,
    *,
    resumable: bool,
    handle: str | None,
    dropped: types.FunctionCall,
) -> None:
    """Reconnect (resuming from the last handle, if any), repeat the user's turn: the model
    asks again with a new id; once answered, the call is in the history exactly once."""
    config = live_config(modality, resumable=resumable, handle=handle)
    async with client.aio.live.connect(model=emulator.model, config=config) as s:
        await send_text(s, CALL)
        again = await receive_call(s)
        assert again.id != dropped.id
        assert (again.name, again.args) == (dropped.name, dropped.args)
        await answer(s, again)
        assert said(modality, await turn(s)) == REPLY
        await send_text(s, "recap")
        recap = said(modality, await turn(s))
    # The resumed history is the handle's (before the call turn) plus the repeated turn.
    assert recap == "Earlier you said: " + ("hello | " if resumable else "") + CALL
    record = emulator.recorder.last()
    assert record.resumed is resumable
    assert record.tool_responses == [{"id": again.id, "name": "get_weather", "response": ANSWER}]


def drop_timers() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == DROP_TIMER_TASK and not t.done()]


async def no_drop_timers_left() -> None:
    for _ in range(50):
        if not drop_timers():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"drop timers still pending: {drop_timers()}")


def test_tool_drop_faults_parse_from_the_header_syntax():
    faults = Faults.parse("drop_after_tool_call=0; drop_after_tool_response=0.25")
    assert faults == Faults(drop_after_tool_call=0.0, drop_after_tool_response=0.25)
    assert Faults.parse(faults.to_header()) == faults
    assert Faults().drop_after_tool_call is None
    assert Faults().drop_after_tool_response is None


# --- (a) right after the toolCall ---------------------------------------------------------


@pytest.mark.parametrize(("modality", "resumable"), MODES)
async def test_drop_after_tool_call_0_aborts_right_after_the_call(
    live_emulator, live_client, modality, resumable
):
    live_emulator.fail_next(drop_after_tool_call=0)
    handle = None
    config = live_config(modality, resumable=resumable)
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        if resumable:
            handle = await greet(s)  # a plain turn does not trigger it
        await send_text(s, CALL)
        received, error, _ = await until_dropped(s)
    assert error.code == 1006
    # The toolCall arrives, then the connection dies before anything else (not even the
    # `resumable: false` update).
    assert len(received) == 1
    assert received[0].tool_call is not None
    (call,) = received[0].tool_call.function_calls
    record = await live_emulator.recorder.wait_closed(live_emulator.recorder.last())
    assert record.close_code == 1006
    assert record.close_reason == "dropped by fault injection after toolCall"
    assert record.sent[-1] == {"toolCall": {"functionCalls": record.tool_calls}}
    assert record.tool_calls[0]["id"] == call.id
    assert record.tool_responses == []
    await ask_again(
        live_emulator, live_client, modality, resumable=resumable, handle=handle, dropped=call
    )


# --- (b) right after the toolResponse -----------------------------------------------------


@pytest.mark.parametrize(("modality", "resumable"), MODES)
async def test_drop_after_tool_response_0_aborts_before_any_reply(
    live_emulator, live_client, modality, resumable
):
    live_emulator.fail_next(drop_after_tool_response=0)
    handle = None
    config = live_config(modality, resumable=resumable)
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        if resumable:
            handle = await greet(s)
        await send_text(s, CALL)
        call = await receive_call(s)
        if resumable:
            # While the call is pending the session is not resumable: no new handle.
            update = (await next_message(s)).session_resumption_update
            assert update is not None
            assert (update.resumable, update.new_handle) == (False, None)
        await answer(s, call)
        received, error, _ = await until_dropped(s)
    assert error.code == 1006
    # No model text or audio, no generationComplete/turnComplete after the response.
    assert received == []
    record = await live_emulator.recorder.wait_closed(live_emulator.recorder.last())
    assert record.close_code == 1006
    assert record.close_reason == "dropped by fault injection after toolResponse"
    # The response reached the emulator but was not acted on.
    assert "toolResponse" in record.messages[-1]
    assert record.tool_responses == []
    sent_after_call = record.sent[
        next(i for i, m in enumerate(record.sent) if "toolCall" in m) + 1 :
    ]
    assert all("serverContent" not in m for m in sent_after_call)
    await ask_again(
        live_emulator, live_client, modality, resumable=resumable, handle=handle, dropped=call
    )


# --- (c) later: a slow tool, or a reply in progress ---------------------------------------


@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_drop_after_tool_call_delay_drops_while_the_tool_runs(
    live_emulator, live_client, modality
):
    config = live_config(modality, resumable=True, drop_after_tool_call=0.3)
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        handle = await greet(s)
        await send_text(s, CALL)
        call = await receive_call(s)
        called_at = time.monotonic()
        # The tool is slow: no answer yet when the connection goes.
        received, error, dropped_at = await until_dropped(s)
    assert error.code == 1006
    assert 0.25 <= dropped_at - called_at < 3
    assert [m.session_resumption_update.resumable for m in received] == [False]
    record = live_emulator.recorder.last()
    assert record.close_code == 1006
    assert record.tool_responses == []
    await ask_again(
        live_emulator, live_client, modality, resumable=True, handle=handle, dropped=call
    )


async def test_drop_after_tool_call_delay_counts_from_the_first_call_only(
    live_emulator, live_client
):
    """The delay runs from the first toolCall, answered or not; later calls do not re-arm."""
    live_emulator.fail_next(drop_after_tool_call=1.5)
    config = live_config("TEXT", resumable=False)
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, CALL)
        first = await receive_call(s)
        called_at = time.monotonic()
        await answer(s, first)  # a fast tool: the reply comes before the drop
        messages = await turn(s)
        assert text_of(messages) == REPLY
        assert flags(messages)[-1] == "turn_complete"
        await asyncio.sleep(max(0.0, called_at + 0.75 - time.monotonic()))
        await send_text(s, CALL)
        second = await receive_call(s)
        assert second.id != first.id
        received, error, dropped_at = await until_dropped(s)
    assert error.code == 1006
    assert received == []
    # 1.5 s after the first call; re-armed by the second it would be >= 2.25 s.
    assert 1.45 <= dropped_at - called_at < 2.0


@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_drop_after_tool_response_delay_drops_later(live_emulator, live_client, modality):
    live_emulator.fail_next(drop_after_tool_response=0.3)
    config = live_config(modality, resumable=True)
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, CALL)
        call = await receive_call(s)
        answered_at = time.monotonic()
        await answer(s, call)
        # The reply (fast at the test pace) and its turnComplete come before the drop.
        messages = await turn(s)
        received, error, dropped_at = await until_dropped(s)
    assert said(modality, messages) == REPLY
    assert flags(messages)[-2:] == ["generation_complete", "turn_complete"]
    assert error.code == 1006
    assert dropped_at - answered_at >= 0.25
    # The response was acted on: after the turn a resumable handle holds the result.
    (update,) = [m.session_resumption_update for m in received]
    assert update.resumable
    assert update.new_handle
    record = live_emulator.recorder.last()
    assert record.close_code == 1006
    assert record.tool_responses == [{"id": call.id, "name": "get_weather", "response": ANSWER}]


async def test_drop_after_tool_response_delay_cuts_a_reply_in_progress(live_emulator, live_client):
    # At real-time pace the spoken reply lasts about 2 s: the drop comes in the middle.
    live_emulator.fail_next(drop_after_tool_response=0.3, pace=1.0)
    config = live_config("AUDIO", resumable=True)
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, CALL)
        call = await receive_call(s)
        await answer(s, call)
        received, error, _ = await until_dropped(s)
    assert error.code == 1006
    full = len(REPLY) * live_emulator.config.speech_ms_per_char * 48  # 24 kHz PCM16: 48 B/ms
    assert 0 < len(audio_of(received)) < full
    assert flags(received) == []  # no generationComplete, no turnComplete
    # No handle was issued after the call: a resume goes back to before the user's turn.
    updates = [m.session_resumption_update for m in received if m.session_resumption_update]
    assert [(u.resumable, u.new_handle) for u in updates] == [(False, None)]


# --- a pending drop ends with the connection ----------------------------------------------


async def test_pending_drop_timers_are_cancelled_when_the_client_closes(live_emulator, live_client):
    live_emulator.fail_next(drop_after_tool_call=5, drop_after_tool_response=5)
    config = live_config("TEXT", resumable=False)
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, CALL)
        await answer(s, await receive_call(s))
        assert text_of(await turn(s)) == REPLY
        assert len(drop_timers()) == 2  # both armed, neither due yet
    record = await live_emulator.recorder.wait_closed(live_emulator.recorder.last())
    assert record.close_code == 1000
    await no_drop_timers_left()


async def test_pending_drop_timer_is_cancelled_when_the_server_closes(live_emulator, live_client):
    live_emulator.fail_next(drop_after_tool_call=5, close_after=2, close_code=1011)
    config = live_config("TEXT", resumable=False)
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, CALL)
        call = await receive_call(s)
        assert len(drop_timers()) == 1
        await answer(s, call)  # the 2nd message: closed with 1011
        received, error, _ = await until_dropped(s)
    assert (error.code, received) == (1011, [])
    record = await live_emulator.recorder.wait_closed(live_emulator.recorder.last())
    assert record.close_code == 1011
    await no_drop_timers_left()


async def test_pending_drop_timer_does_not_break_a_black_hole(live_emulator, live_client):
    live_emulator.fail_next(drop_after_tool_call=0.2, black_hole_after=2)
    config = live_config("TEXT", resumable=False)
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, CALL)
        await answer(s, await receive_call(s))  # the 2nd message: silence from now on
        with pytest.raises(TimeoutError):
            await next_message(s, within=0.6)  # past the drop's due time: still open
        record = live_emulator.recorder.last()
        assert (record.close_code, record.close_reason) == (None, "black hole")
        await no_drop_timers_left()
        live_emulator.emulator.abort_connections()  # the test's own way out
        with pytest.raises(errors.APIError):
            await next_message(s, within=2)


# --- NON_BLOCKING calls -------------------------------------------------------------------

SEARCH = types.FunctionDeclaration(
    name="search", description="Slow search", behavior=types.Behavior.NON_BLOCKING
)


@pytest.mark.parametrize("knob", ["drop_after_tool_call", "drop_after_tool_response"])
async def test_tool_drops_apply_to_non_blocking_calls(live_emulator, live_client, knob):
    live_emulator.fail_next(**{knob: 0})
    config = types.LiveConnectConfig(
        response_modalities=["TEXT"], tools=[types.Tool(function_declarations=[SEARCH])]
    )
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, 'call search {"q": "cats"}')
        if knob == "drop_after_tool_call":
            received, error, _ = await until_dropped(s)
            # Only the toolCall: no "Started search." and no turnComplete.
            assert [bool(m.tool_call) for m in received] == [True]
        else:
            messages = await turn(s)  # the turn goes on while the function runs
            (call,) = next(m for m in messages if m.tool_call).tool_call.function_calls
            assert text_of(messages) == "Started search."
            await s.send_tool_response(
                function_responses=[
                    types.FunctionResponse(id=call.id, name="search", response={"hits": 3})
                ]
            )
            received, error, _ = await until_dropped(s)
            assert received == []  # the result is never announced
    assert error.code == 1006
    record = live_emulator.recorder.last()
    assert record.close_reason.endswith(
        "toolCall" if knob == "drop_after_tool_call" else "toolResponse"
    )
    assert record.tool_responses == []
