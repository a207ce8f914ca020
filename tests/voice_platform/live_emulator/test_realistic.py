"""The realistic profile: time scale, goAway and connection ends, refusals, resume while
open, the CLI, and the default profile left as it was."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time

import pytest
from google.genai import errors, types

from voice_platform.live_emulator import cli, profiles, protocol
from voice_platform.live_emulator.config import EmulatorConfig
from voice_platform.live_emulator.recorder import SessionRecord
from voice_platform.live_emulator.testing import running_emulator

from .helpers import next_message, send_text, text_of, turn

RESUMABLE_TEXT = {"response_modalities": ["TEXT"], "session_resumption": {}}
TEXT = {"response_modalities": ["TEXT"]}
NEW_FIELDS = [f.name for f in dataclasses.fields(EmulatorConfig) if f.name in profiles.REALISTIC]


async def handle_after_turn(session, text: str) -> str:
    await send_text(session, text)
    await turn(session)
    update = (await next_message(session)).session_resumption_update
    assert update is not None
    assert update.new_handle
    return update.new_handle


def resume(handle: str) -> dict[str, object]:
    return {"response_modalities": ["TEXT"], "session_resumption": {"handle": handle}}


async def until(condition, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# --- profiles and CLI ---------------------------------------------------------------------


def test_profile_default_is_the_plain_emulator():
    assert profiles.config_for("default") == EmulatorConfig()
    plain = EmulatorConfig()
    assert plain.profile == "default"
    assert (plain.time_scale, plain.latency, plain.usage_updates_per_turn) == (1.0, 0.0, 1)
    for name in NEW_FIELDS:
        if name != "profile":
            assert getattr(plain, name) != profiles.REALISTIC[name], name


def test_profile_realistic_values_and_overrides():
    config = EmulatorConfig.realistic(time_scale=60, pace=20)
    assert config.profile == "realistic"
    assert (config.time_scale, config.pace) == (60, 20)
    assert config.pong_delay == (8.0, 30.0)
    assert config.go_away_notice_range == (50.0, 60.0)
    assert config.refuse_resume_while_open
    assert config.tool_preamble
    assert config.scaled(600) == 10.0
    with pytest.raises(ValueError, match="unknown profile"):
        profiles.config_for("kind")
    with pytest.raises(ValueError, match="time_scale"):
        EmulatorConfig(time_scale=0)


def parse(*argv: str) -> EmulatorConfig:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.config_from_args(parser.parse_args(list(argv)))


def test_cli_profile_realistic_time_scale():
    config = parse("--profile", "realistic", "--time-scale", "60", "--port", "0")
    assert config == profiles.realistic(time_scale=60.0, port=0)


def test_cli_flags_override_the_profile():
    config = parse(
        "--profile",
        "realistic",
        "--no-tool-preamble",
        "--pong-delay",
        "1",
        "2",
        "--seed",
        "5",
        "--expired-api-key",
        "old",
        "--audio-tool-call",
        '880=call lookup {"q": 1}\\ncall other {}',
        "--audio-tool-call",
        "440=call third {}",
    )
    assert config.tool_preamble is False
    assert (config.pong_delay, config.random_seed) == ((1.0, 2.0), 5)
    assert config.expired_api_keys == frozenset({"old"})
    assert config.audio_tool_calls == {
        880: 'call lookup {"q": 1}\ncall other {}',
        440: "call third {}",
    }
    assert config.empty_turn_rate == profiles.REALISTIC["empty_turn_rate"]


def test_cli_without_profile_is_unchanged():
    assert parse() == EmulatorConfig()


# --- time scale: goAway, connection end, session limit ------------------------------------


async def test_time_scale_go_away_in_range_then_deadline_expired(live_emulator_cert_dir):
    # 600 s lifetime / 600 = 1 s; the 50-60 s notice becomes 0.083-0.1 s.
    async with running_emulator(
        cert_dir=live_emulator_cert_dir, profile="realistic", time_scale=600, pace=20
    ) as emu:
        client = emu.make_client()
        started = time.monotonic()
        async with client.aio.live.connect(model=emu.model, config=TEXT) as s:
            message = await next_message(s, within=3)
            go_away_at = time.monotonic() - started
            with pytest.raises(errors.APIError) as excinfo:
                await next_message(s, within=3)
            closed_at = time.monotonic() - started
        record = await emu.recorder.wait_closed(emu.recorder.last())
    time_left = message.go_away.time_left
    assert time_left.endswith("s")
    assert 50 / 600 - 0.001 <= float(time_left[:-1]) <= 60 / 600 + 0.001
    assert 0.85 <= go_away_at <= 1.3
    assert 0.95 <= closed_at <= 1.5
    assert (excinfo.value.code, excinfo.value.details) == (1011, protocol.REASON_DEADLINE)
    assert record.go_away_sent
    assert record.go_away_time_left == pytest.approx(float(time_left[:-1]), abs=0.001)
    assert record.closed_by == "server"


async def test_time_scale_session_limit(live_emulator_cert_dir):
    # 900 s of audio / 900 = 1 s; the connection lifetime is pushed out of the way.
    async with running_emulator(
        cert_dir=live_emulator_cert_dir,
        profile="realistic",
        time_scale=900,
        connection_lifetime=9000,
        pace=20,
    ) as emu:
        client = emu.make_client()
        started = time.monotonic()
        async with client.aio.live.connect(model=emu.model, config=TEXT) as s:
            with pytest.raises(errors.APIError) as excinfo:
                await next_message(s, within=3)
    assert (excinfo.value.code, excinfo.value.details) == (1011, protocol.REASON_SESSION_LIMIT)
    assert 0.95 <= time.monotonic() - started <= 1.6


# --- refusals -----------------------------------------------------------------------------


async def test_refusal_max_concurrent_sessions(live_emulator_cert_dir):
    async with running_emulator(
        cert_dir=live_emulator_cert_dir, pace=0, max_concurrent_sessions=1
    ) as emu:
        client = emu.make_client()
        async with client.aio.live.connect(model=emu.model, config=TEXT):
            with pytest.raises(errors.APIError) as excinfo:
                async with client.aio.live.connect(model=emu.model, config=TEXT):
                    pass
        async with client.aio.live.connect(model=emu.model, config=TEXT) as s:
            await send_text(s, "room again")
            assert text_of(await turn(s)) == "You said: room again"
    assert excinfo.value.code == 1011
    assert "RESOURCE_EXHAUSTED" in excinfo.value.details
    assert excinfo.value.details == protocol.REASON_QUOTA
    assert emu.recorder.sessions[1].closed_by == "server"


async def test_refusal_quota_rate(live_emulator_cert_dir):
    async with running_emulator(
        cert_dir=live_emulator_cert_dir, pace=0, quota_refusal_rate=1.0
    ) as emu:
        with pytest.raises(errors.APIError) as excinfo:
            async with emu.make_client().aio.live.connect(model=emu.model):
                pass
    assert (excinfo.value.code, excinfo.value.details) == (1011, protocol.REASON_QUOTA)


@pytest.mark.filterwarnings("ignore:The SDK.s .* experimental")
async def test_refusal_expired_api_key(live_emulator_cert_dir):
    async with running_emulator(
        cert_dir=live_emulator_cert_dir, pace=0, expired_api_keys=frozenset({"old"})
    ) as emu:
        with pytest.raises(errors.APIError) as excinfo:
            async with emu.make_client(api_key="old").aio.live.connect(model=emu.model):
                pass
        async with emu.make_client(api_key="new").aio.live.connect(model=emu.model) as s:
            assert s.setup_complete is not None
        # The REST side says the same, as Google's REST API does (gemini-cli#4430).
        with pytest.raises(errors.ClientError) as rest:
            await emu.make_client(api_key="old", api_version="v1alpha").aio.auth_tokens.create()
    assert (excinfo.value.code, excinfo.value.details) == (1007, protocol.REASON_KEY_EXPIRED)
    assert (rest.value.code, rest.value.message) == (400, protocol.REASON_KEY_EXPIRED)


async def test_refusal_deterministic_refuse_code(live_emulator, live_client):
    live_emulator.fail_next(refuse_code=1008, refuse_reason=protocol.REASON_NOT_IMPLEMENTED)
    with pytest.raises(errors.APIError) as excinfo:
        async with live_client.aio.live.connect(model=live_emulator.model):
            pass
    assert (excinfo.value.code, excinfo.value.details) == (1008, protocol.REASON_NOT_IMPLEMENTED)
    assert live_emulator.recorder.last().closed_by == "fault"
    async with live_client.aio.live.connect(model=live_emulator.model) as s:
        assert s.setup_complete is not None  # the next connection is clean


TOOLS = types.LiveConnectConfig(
    response_modalities=["TEXT"],
    tools=[types.Tool(function_declarations=[types.FunctionDeclaration(name="f")])],
)


async def test_refusal_not_implemented_at_a_function_call(live_emulator_cert_dir):
    async with running_emulator(
        cert_dir=live_emulator_cert_dir, pace=0, not_implemented_rate=1.0
    ) as emu:
        client = emu.make_client()
        async with client.aio.live.connect(model=emu.model, config=TOOLS) as s:
            await send_text(s, "plain text is fine")
            assert text_of(await turn(s)) == "You said: plain text is fine"
            await send_text(s, "call f {}")
            with pytest.raises(errors.APIError) as excinfo:
                await turn(s)
        # Only native-audio models are affected (livekit/agents#4545).
        async with client.aio.live.connect(
            model="gemini-3.1-flash-live-preview", config=TOOLS
        ) as s:
            await send_text(s, "call f {}")
            assert (await next_message(s)).tool_call is not None
    assert (excinfo.value.code, excinfo.value.details) == (1008, protocol.REASON_NOT_IMPLEMENTED)
    assert emu.recorder.sessions[0].tool_calls == []


# --- resume while the older socket is open ------------------------------------------------


async def test_resume_refused_while_open_then_accepted_after_close(live_emulator_cert_dir):
    async with running_emulator(
        cert_dir=live_emulator_cert_dir, pace=0, refuse_resume_while_open=True
    ) as emu:
        client = emu.make_client()
        async with client.aio.live.connect(model=emu.model, config=RESUMABLE_TEXT) as old:
            handle = await handle_after_turn(old, "keep me")
            with pytest.raises(errors.APIError) as excinfo:
                async with client.aio.live.connect(model=emu.model, config=resume(handle)):
                    pass
            await send_text(old, "still here")  # the old socket is unharmed
            assert text_of(await turn(old)) == "You said: still here"
        # Closed first, then resumed: accepted at once.
        async with client.aio.live.connect(model=emu.model, config=resume(handle)) as new:
            await send_text(new, "recap")
            assert text_of(await turn(new)) == "Earlier you said: keep me"
    assert (excinfo.value.code, excinfo.value.details) == (1011, protocol.REASON_RESUME_WHILE_OPEN)


async def refused_then_accepted(emu, client, handle: str, dead: SessionRecord) -> float:
    """Resume at once (refused), then once the server gave up on the dead connection."""
    with pytest.raises(errors.APIError) as excinfo:
        async with client.aio.live.connect(model=emu.model, config=resume(handle)):
            pass
    assert excinfo.value.code == 1011
    waited = time.monotonic()
    await asyncio.sleep(0.55)  # dead_peer_timeout 1 s at time_scale 2
    async with client.aio.live.connect(model=emu.model, config=resume(handle)) as s:
        await send_text(s, "recap")
        assert text_of(await turn(s)) == "Earlier you said: before"
    return waited


async def test_resume_after_client_vanished_waits_for_dead_peer_timeout(live_emulator_cert_dir):
    async with running_emulator(
        cert_dir=live_emulator_cert_dir,
        pace=0,
        refuse_resume_while_open=True,
        dead_peer_timeout=1.0,
        time_scale=2.0,
    ) as emu:
        client = emu.make_client()
        async with client.aio.live.connect(model=emu.model, config=RESUMABLE_TEXT) as s:
            handle = await handle_after_turn(s, "before")
            s._ws.transport.abort()  # TCP gone, no close frame
        dead = emu.recorder.sessions[0]
        await until(lambda: dead.closed_at is not None)
        assert (dead.close_code, dead.closed_by) == (1006, "client")
        await refused_then_accepted(emu, client, handle, dead)


async def test_resume_after_black_hole_waits_for_dead_peer_timeout(live_emulator_cert_dir):
    async with running_emulator(
        cert_dir=live_emulator_cert_dir,
        pace=0,
        refuse_resume_while_open=True,
        dead_peer_timeout=1.0,
        time_scale=2.0,
    ) as emu:
        client = emu.make_client()
        emu.fail_next(black_hole_after=2)
        async with client.aio.live.connect(model=emu.model, config=RESUMABLE_TEXT) as s:
            handle = await handle_after_turn(s, "before")
            await send_text(s, "into the void")
            dead = emu.recorder.sessions[0]
            await until(lambda: dead.black_holed)
            s._ws.transport.abort()  # the client gives up; the server cannot tell
        # Paused reading: without the dead-peer timeout the server would never notice.
        await asyncio.sleep(0.1)
        assert dead.closed_at is None
        waited = await refused_then_accepted(emu, client, handle, dead)
    assert dead.closed_at is not None
    assert dead.closed_at <= waited + 0.55
    assert (dead.black_holed, dead.closed_by) == (True, "fault")
    assert (dead.close_code, dead.close_reason) == (None, "black hole")  # kept to the end
