"""Fault injection, per connection (SDK header or queue) and server-wide."""

from __future__ import annotations

import asyncio
import time

import pytest
from google.genai import errors, types

from voice_platform.live_emulator.faults import Faults
from voice_platform.live_emulator.testing import running_emulator

from .helpers import next_message, send_text, text_of, turn


def with_faults(emulator, **faults) -> types.LiveConnectConfig:
    headers = emulator.faults_header(**faults)
    return types.LiveConnectConfig(
        response_modalities=["TEXT"], http_options=types.HttpOptions(headers=headers)
    )


@pytest.mark.parametrize("code", [1007, 1008, 1011])
async def test_fault_close_after_messages(live_emulator, live_client, code):
    config = with_faults(live_emulator, close_after=2, close_code=code, close_reason="boom")
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, "one")
        assert text_of(await turn(s)) == "You said: one"
        await send_text(s, "two")
        with pytest.raises(errors.APIError) as excinfo:
            await turn(s)
    assert (excinfo.value.code, excinfo.value.details) == (code, "boom")
    # The message that triggered the fault reached the server but was not answered.
    record = live_emulator.recorder.last()
    assert record.texts == ["one"]
    assert len(record.messages) == 2


async def test_fault_only_the_session_that_asked_fails(live_emulator, live_client):
    config = with_faults(live_emulator, close_after=1)
    async with (
        live_client.aio.live.connect(model=live_emulator.model, config=config) as bad,
        live_client.aio.live.connect(
            model=live_emulator.model, config={"response_modalities": ["TEXT"]}
        ) as good,
    ):
        await send_text(bad, "x")
        await send_text(good, "y")
        with pytest.raises(errors.APIError):
            await turn(bad)
        assert text_of(await turn(good)) == "You said: y"


async def test_fault_queue_applies_to_next_connection_only(live_emulator, live_client):
    live_emulator.fail_next(close_after=0, close_code=1011)
    with pytest.raises(errors.APIError) as excinfo:
        async with live_client.aio.live.connect(model=live_emulator.model) as s:
            await next_message(s)
    assert excinfo.value.code == 1011
    async with live_client.aio.live.connect(
        model=live_emulator.model, config={"response_modalities": ["TEXT"]}
    ) as s:
        await send_text(s, "fine")
        assert text_of(await turn(s)) == "You said: fine"


async def test_fault_drop_tcp_surfaces_as_1006(live_emulator, live_client):
    config = with_faults(live_emulator, drop_after=1)
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, "bye")
        with pytest.raises(errors.APIError) as excinfo:
            await turn(s)
    assert excinfo.value.code == 1006


async def test_fault_stall_before_setup_complete_hangs_connect(live_emulator, live_client):
    config = with_faults(live_emulator, stall_setup=float("inf"))

    async def connect_and_leave() -> None:
        async with live_client.aio.live.connect(model=live_emulator.model, config=config):
            pass

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(connect_and_leave(), 0.5)


async def test_fault_stall_before_setup_complete_delays_connect(live_emulator, live_client):
    config = with_faults(live_emulator, stall_setup=0.4)
    started = time.monotonic()
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        assert s.setup_complete is not None
    assert time.monotonic() - started >= 0.4


async def test_fault_black_hole_goes_silent_without_closing(live_emulator, live_client):
    config = with_faults(live_emulator, black_hole_after=2)
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, "one")
        await turn(s)
        await send_text(s, "two")
        with pytest.raises(TimeoutError):
            await next_message(s, within=0.5)
        record = live_emulator.recorder.last()
        assert record.close_code is None
        assert record.close_reason == "black hole"
        # Sending still "works" from the client's side: nothing tells it the peer is gone.
        await send_text(s, "three")
        # Only the client's own timeout (or the server going away) ends it.
        live_emulator.emulator.abort_connections()
        with pytest.raises(errors.APIError) as excinfo:
            await next_message(s, within=2)
    assert excinfo.value.code == 1006
    assert record.texts == ["one"]
    assert len(record.messages) == 2  # "three" never read


async def test_fault_reply_delay(live_emulator, live_client):
    config = with_faults(live_emulator, reply_delay=0.3)
    async with live_client.aio.live.connect(model=live_emulator.model, config=config) as s:
        started = time.monotonic()
        await send_text(s, "slow")
        messages = await turn(s)
    assert time.monotonic() - started >= 0.3
    assert text_of(messages) == "You said: slow"


async def test_fault_server_wide_default(live_emulator_cert_dir):
    faults = Faults(close_after=1, close_code=1008, close_reason="all fail")
    async with running_emulator(cert_dir=live_emulator_cert_dir, pace=0, faults=faults) as emu:
        client = emu.make_client()
        for _ in range(2):
            async with client.aio.live.connect(model=emu.model) as s:
                await send_text(s, "x")
                with pytest.raises(errors.APIError) as excinfo:
                    await turn(s)
            assert excinfo.value.code == 1008


async def test_fault_bad_header_closes_1007(live_emulator, live_client):
    config = types.LiveConnectConfig(
        http_options=types.HttpOptions(headers={"x-emulator-faults": "explode=1"})
    )
    with pytest.raises(errors.APIError) as excinfo:
        async with live_client.aio.live.connect(model=live_emulator.model, config=config):
            pass
    assert excinfo.value.code == 1007
