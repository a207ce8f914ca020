"""Function calling: blocking, parallel, NON_BLOCKING, cancellation on barge-in."""

from __future__ import annotations

import json

import pytest
from google.genai import types

from .helpers import flags, next_message, send_audio, send_text, text_of, tone, turn

WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Weather in a city",
    parameters=types.Schema(
        type="OBJECT", properties={"city": types.Schema(type="STRING")}, required=["city"]
    ),
)
TIME = types.FunctionDeclaration(name="get_time", description="Local time")
SEARCH = types.FunctionDeclaration(
    name="search", description="Slow search", behavior=types.Behavior.NON_BLOCKING
)


def tool_config(*decls: types.FunctionDeclaration, **extra) -> types.LiveConnectConfig:
    return types.LiveConnectConfig(
        response_modalities=["TEXT"], tools=[types.Tool(function_declarations=list(decls))], **extra
    )


async def test_tool_call_blocking_waits_for_response(live_emulator, live_client):
    async with live_client.aio.live.connect(
        model=live_emulator.model, config=tool_config(WEATHER)
    ) as s:
        await send_text(s, 'call get_weather {"city": "Paris"}')
        message = await next_message(s)
        assert message.tool_call is not None
        (call,) = message.tool_call.function_calls
        assert (call.name, call.args) == ("get_weather", {"city": "Paris"})
        with pytest.raises(TimeoutError):
            await next_message(s, within=0.3)  # blocked until the response arrives
        response = {"temp_c": 21, "sky": "clear"}
        await s.send_tool_response(
            function_responses=[
                types.FunctionResponse(id=call.id, name=call.name, response=response)
            ]
        )
        messages = await turn(s)
    expected = "Result of get_weather: " + json.dumps(response, separators=(",", ":"))
    assert text_of(messages) == expected
    record = live_emulator.recorder.last()
    assert record.tool_responses == [{"id": call.id, "name": "get_weather", "response": response}]


async def test_tool_call_parallel_lines_get_unique_ids(live_emulator, live_client):
    async with live_client.aio.live.connect(
        model=live_emulator.model, config=tool_config(WEATHER, TIME)
    ) as s:
        await send_text(s, 'call get_weather {"city": "Oslo"}\ncall get_time {}')
        message = await next_message(s)
        calls = message.tool_call.function_calls
        assert [c.name for c in calls] == ["get_weather", "get_time"]
        assert len({c.id for c in calls}) == 2
        # Answer in reverse order, in two messages: the reply keeps the call order.
        await s.send_tool_response(
            function_responses=[
                types.FunctionResponse(id=calls[1].id, name="get_time", response={"t": "12:00"})
            ]
        )
        await s.send_tool_response(
            function_responses=[
                types.FunctionResponse(id=calls[0].id, name="get_weather", response={"sky": "rain"})
            ]
        )
        messages = await turn(s)
    assert text_of(messages) == (
        'Result of get_weather: {"sky":"rain"}\nResult of get_time: {"t":"12:00"}'
    )


async def test_tool_call_undeclared_name_is_plain_text(live_emulator, live_client):
    async with live_client.aio.live.connect(
        model=live_emulator.model, config=tool_config(WEATHER)
    ) as s:
        await send_text(s, 'call launch_rocket {"now": true}')
        messages = await turn(s)
    assert not any(m.tool_call for m in messages)
    assert text_of(messages) == 'You said: call launch_rocket {"now": true}'


async def test_tool_call_non_blocking_does_not_block_turn(live_emulator, live_client):
    async with live_client.aio.live.connect(
        model=live_emulator.model, config=tool_config(SEARCH)
    ) as s:
        await send_text(s, 'call search {"q": "cats"}')
        messages = await turn(s)
        (call,) = next(m for m in messages if m.tool_call).tool_call.function_calls
        assert text_of(messages) == "Started search."
        # The model keeps talking while the function runs.
        await send_text(s, "meanwhile")
        assert text_of(await turn(s)) == "You said: meanwhile"
        await s.send_tool_response(
            function_responses=[
                types.FunctionResponse(id=call.id, name="search", response={"hits": 3})
            ]
        )
        announced = await turn(s)
    assert text_of(announced) == 'Result of search: {"hits":3}'


async def test_tool_call_non_blocking_silent_result_is_not_spoken(live_emulator, live_client):
    async with live_client.aio.live.connect(
        model=live_emulator.model, config=tool_config(SEARCH)
    ) as s:
        await send_text(s, 'call search {"q": "dogs"}')
        messages = await turn(s)
        (call,) = next(m for m in messages if m.tool_call).tool_call.function_calls
        await s.send_tool_response(
            function_responses=[
                types.FunctionResponse(
                    id=call.id,
                    name="search",
                    response={"hits": 1},
                    scheduling=types.FunctionResponseScheduling.SILENT,
                )
            ]
        )
        with pytest.raises(TimeoutError):
            await next_message(s, within=0.3)


async def test_tool_call_cancelled_by_barge_in(live_emulator, live_client):
    async with live_client.aio.live.connect(
        model=live_emulator.model, config=tool_config(WEATHER)
    ) as s:
        await send_text(s, 'call get_weather {"city": "Rome"}')
        (call,) = (await next_message(s)).tool_call.function_calls
        await send_audio(s, tone(0.3))  # the user talks over the pending call
        messages = await turn(s)
        cancel = next(m for m in messages if m.tool_call_cancellation)
        assert cancel.tool_call_cancellation.ids == [call.id]
        assert flags(messages) == ["interrupted", "turn_complete"]
        # A late answer to the cancelled call is ignored; the next turn is normal.
        await s.send_tool_response(
            function_responses=[
                types.FunctionResponse(id=call.id, name=call.name, response={"late": True})
            ]
        )
        await send_text(s, "never mind")
        assert text_of(await turn(s)) == "You said: never mind"


async def test_tool_call_cancelled_by_text_turn(live_emulator, live_client):
    async with live_client.aio.live.connect(
        model=live_emulator.model, config=tool_config(WEATHER)
    ) as s:
        await send_text(s, 'call get_weather {"city": "Rome"}')
        (call,) = (await next_message(s)).tool_call.function_calls
        await send_text(s, "forget it")
        messages = await turn(s)
        assert [
            i for m in messages if m.tool_call_cancellation for i in m.tool_call_cancellation.ids
        ] == [call.id]
        assert text_of(await turn(s)) == "You said: forget it"
