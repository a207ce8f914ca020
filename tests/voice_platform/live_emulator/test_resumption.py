"""Session resumption, context-window compression, goAway and session limits."""

from __future__ import annotations

import pytest
from google.genai import errors, types

from .helpers import next_message, send_text, text_of, turn, usage

RESUMABLE_TEXT = {"response_modalities": ["TEXT"], "session_resumption": {}}


async def latest_handle(session) -> types.LiveServerSessionResumptionUpdate:
    """The update arrives after turnComplete, so in the next receive() call."""
    message = await next_message(session)
    assert message.session_resumption_update is not None
    return message.session_resumption_update


async def test_resumption_handle_restores_history(live_emulator, live_client):
    async with live_client.aio.live.connect(model=live_emulator.model, config=RESUMABLE_TEXT) as s:
        await send_text(s, "my name is Ada")
        await turn(s)
        first = await latest_handle(s)
        await send_text(s, "I like tea")
        last_usage = usage(await turn(s))
        update = await latest_handle(s)
    assert update.resumable is True
    assert update.new_handle != first.new_handle
    config = {"response_modalities": ["TEXT"], "session_resumption": {"handle": update.new_handle}}
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, "recap")
        messages = await turn(s)
    assert text_of(messages) == "Earlier you said: my name is Ada | I like tea"
    # The restored history is billed as prompt: more than the last turn's whole context.
    assert usage(messages).prompt_token_count > last_usage.prompt_token_count
    records = live_emulator.recorder.sessions
    assert records[1].resumed
    assert records[1].session_id == records[0].session_id


async def test_resumption_older_handle_restores_older_history(live_emulator, live_client):
    async with live_client.aio.live.connect(model=live_emulator.model, config=RESUMABLE_TEXT) as s:
        await send_text(s, "first")
        await turn(s)
        first = await latest_handle(s)
        await send_text(s, "second")
        await turn(s)
    config = {"response_modalities": ["TEXT"], "session_resumption": {"handle": first.new_handle}}
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, "recap")
        assert text_of(await turn(s)) == "Earlier you said: first"


async def test_resumption_not_resumable_during_tool_call(live_emulator, live_client):
    config = types.LiveConnectConfig(
        response_modalities=["TEXT"],
        session_resumption=types.SessionResumptionConfig(),
        tools=[types.Tool(function_declarations=[types.FunctionDeclaration(name="f")])],
    )
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, "call f {}")
        call = (await next_message(s)).tool_call.function_calls[0]
        update = (await next_message(s)).session_resumption_update
        assert update.resumable is False
        assert not update.new_handle
        await s.send_tool_response(
            function_responses=[types.FunctionResponse(id=call.id, name="f", response={})]
        )
        await turn(s)
        assert (await latest_handle(s)).resumable is True


async def test_resumption_without_config_sends_no_updates(live_emulator, live_client):
    async with live_client.aio.live.connect(
        model=live_emulator.model, config={"response_modalities": ["TEXT"]}
    ) as s:
        await send_text(s, "hi")
        await turn(s)
        with pytest.raises(TimeoutError):
            await next_message(s, within=0.2)


async def test_resumption_invalid_handle_closes_1008(live_emulator, live_client):
    config = {"session_resumption": {"handle": "not-a-handle"}}
    with pytest.raises(errors.APIError) as excinfo:
        async with live_client.aio.live.connect(model=live_emulator.model, config=config):
            pass
    assert excinfo.value.code == 1008
    assert "handle" in excinfo.value.details


async def test_resumption_expired_handle_closes_1008(live_emulator, live_client):
    async with live_client.aio.live.connect(model=live_emulator.model, config=RESUMABLE_TEXT) as s:
        await send_text(s, "hello")
        await turn(s)
        handle = (await latest_handle(s)).new_handle
    # Handles live `handle_ttl` after the session ends: let the server see the end first.
    await live_emulator.recorder.wait_closed(live_emulator.recorder.last())
    live_emulator.advance_clock(live_emulator.config.handle_ttl + 1)
    config = {"session_resumption": {"handle": handle}}
    with pytest.raises(errors.APIError) as excinfo:
        async with live_client.aio.live.connect(model=live_emulator.model, config=config):
            pass
    assert excinfo.value.code == 1008


async def test_compression_drops_oldest_turns(live_emulator, live_client):
    config = types.LiveConnectConfig(
        response_modalities=["TEXT"],
        context_window_compression=types.ContextWindowCompressionConfig(
            trigger_tokens=80, sliding_window=types.SlidingWindow(target_tokens=50)
        ),
    )
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        prompts = []
        for word in ["alpha", "bravo", "charlie"]:
            await send_text(s, " ".join([word] * 10))  # 15-20 tokens, 18-23 for the reply
            prompts.append(usage(await turn(s)).prompt_token_count)
        await send_text(s, "recap")
        recap_turn = await turn(s)
    recap = text_of(recap_turn)
    # The third exchange crossed the trigger: the window slid past alpha and bravo.
    assert recap == "Earlier you said: " + " ".join(["charlie"] * 10)
    assert prompts[2] > 80  # crossed the trigger...
    assert usage(recap_turn).prompt_token_count < 50 + 10  # ...and slid back to the target
    assert live_emulator.recorder.last().compressions >= 1


async def test_go_away_then_close(live_emulator, live_client):
    headers = live_emulator.faults_header(lifetime=0.6, go_away_notice=0.4)
    config = types.LiveConnectConfig(http_options=types.HttpOptions(headers=headers))
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        message = await next_message(s, within=2)
        assert message.go_away.time_left == "0.4s"
        with pytest.raises(errors.APIError) as excinfo:
            await next_message(s, within=2)
    assert excinfo.value.code == live_emulator.config.lifetime_close_code


@pytest.fixture
def live_emulator_settings():
    # Used by the session-limit test below and harmless for the others in this module.
    return {"pace": 20.0, "session_limit_audio": 0.5}


async def test_session_limit_without_compression(live_emulator, live_client):
    async with live_client.aio.live.connect(model=live_emulator.model) as s:
        with pytest.raises(errors.APIError) as excinfo:
            await next_message(s, within=3)
    assert excinfo.value.code == 1011


async def test_session_limit_lifted_by_compression(live_emulator, live_client):
    config = {
        "response_modalities": ["TEXT"],
        "context_window_compression": {"sliding_window": {}},
    }
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        with pytest.raises(TimeoutError):
            await next_message(s, within=0.8)
        await send_text(s, "still open")
        assert text_of(await turn(s)) == "You said: still open"
