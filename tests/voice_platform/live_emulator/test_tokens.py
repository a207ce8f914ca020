"""Ephemeral tokens: created over REST with the SDK, enforced on connect."""

from __future__ import annotations

import datetime as dt

import pytest
from google.genai import errors, types

from voice_platform.live_emulator.testing import running_emulator

from .helpers import next_message, send_text, text_of, turn

pytestmark = pytest.mark.filterwarnings("ignore:The SDK.s .* experimental")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse(value) -> dt.datetime:
    # The SDK hands the REST times back as strings.
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


async def create_token(emulator, **config) -> types.AuthToken:
    client = emulator.make_client(api_version="v1alpha")
    return await client.aio.auth_tokens.create(config=types.CreateAuthTokenConfig(**config))


async def test_token_create_returns_name_and_times(live_emulator):
    expire = now() + dt.timedelta(minutes=30)
    token = await create_token(live_emulator, uses=2, expire_time=expire)
    assert token.name.startswith("auth_tokens/")
    assert token.uses == 2
    assert abs((parse(token.expire_time) - expire).total_seconds()) < 1
    # Default new-session window: 60 s.
    window = (parse(token.new_session_expire_time) - now()).total_seconds()
    assert 50 < window <= 60


async def test_token_opens_constrained_session(live_emulator):
    token = await create_token(live_emulator, uses=1)
    client = live_emulator.make_client(api_key=token.name, api_version="v1alpha")
    async with client.aio.live.connect(
        model=live_emulator.model, config={"response_modalities": ["TEXT"]}
    ) as s:
        await send_text(s, "with a token")
        assert text_of(await turn(s)) == "You said: with a token"
    record = live_emulator.recorder.last()
    assert record.token == token.name
    assert record.path.endswith("BidiGenerateContentConstrained")


async def test_token_used_up(live_emulator):
    token = await create_token(live_emulator, uses=1)
    client = live_emulator.make_client(api_key=token.name, api_version="v1alpha")
    async with client.aio.live.connect(model=live_emulator.model):
        pass
    with pytest.raises(errors.APIError) as excinfo:
        async with client.aio.live.connect(model=live_emulator.model):
            pass
    assert excinfo.value.code == 1008
    assert "no uses left" in excinfo.value.details


async def test_token_expired(live_emulator):
    expire = now() + dt.timedelta(minutes=5)
    token = await create_token(
        live_emulator, uses=0, expire_time=expire, new_session_expire_time=expire
    )
    live_emulator.advance_clock(301)
    client = live_emulator.make_client(api_key=token.name, api_version="v1alpha")
    with pytest.raises(errors.APIError) as excinfo:
        async with client.aio.live.connect(model=live_emulator.model):
            pass
    assert (excinfo.value.code, excinfo.value.details) == (1008, "Ephemeral token has expired.")


async def test_token_new_session_window_closed_but_resume_allowed(live_emulator):
    token = await create_token(
        live_emulator,
        uses=1,
        expire_time=now() + dt.timedelta(minutes=30),
        new_session_expire_time=now() + dt.timedelta(seconds=60),
    )
    client = live_emulator.make_client(api_key=token.name, api_version="v1alpha")
    config = {"response_modalities": ["TEXT"], "session_resumption": {}}
    async with client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, "remember me")
        await turn(s)
        handle = (await next_message(s)).session_resumption_update.new_handle
    live_emulator.advance_clock(120)
    with pytest.raises(errors.APIError) as excinfo:
        async with client.aio.live.connect(model=live_emulator.model):
            pass
    assert excinfo.value.code == 1008
    # Resuming neither needs the new-session window nor consumes a use.
    resume = {"response_modalities": ["TEXT"], "session_resumption": {"handle": handle}}
    async with client.aio.live.connect(model=live_emulator.model, config=resume) as s:
        await send_text(s, "recap")
        assert text_of(await turn(s)) == "Earlier you said: remember me"


async def test_token_locked_fields_override_client_setup(live_emulator):
    token = await create_token(
        live_emulator,
        uses=1,
        live_connect_constraints=types.LiveConnectConstraints(
            model=live_emulator.model,
            config=types.LiveConnectConfig(
                response_modalities=["TEXT"], system_instruction="locked instruction"
            ),
        ),
    )
    client = live_emulator.make_client(api_key=token.name, api_version="v1alpha")
    asked = {"response_modalities": ["AUDIO"], "system_instruction": "client instruction"}
    async with client.aio.live.connect(model=live_emulator.model, config=asked) as s:
        await send_text(s, "hi")
        messages = await turn(s)
    assert text_of(messages) == "You said: hi"  # TEXT, as the token locked it
    setup = live_emulator.recorder.last().setup
    assert setup["systemInstruction"]["parts"][0]["text"] == "locked instruction"


async def test_token_field_mask_locks_only_listed_fields(live_emulator):
    token = await create_token(
        live_emulator,
        uses=1,
        live_connect_constraints=types.LiveConnectConstraints(
            model=live_emulator.model,
            config=types.LiveConnectConfig(temperature=0.2, system_instruction="default"),
        ),
        lock_additional_fields=["temperature"],
    )
    client = live_emulator.make_client(api_key=token.name, api_version="v1alpha")
    asked = {"temperature": 1.5, "system_instruction": "mine", "response_modalities": ["TEXT"]}
    async with client.aio.live.connect(model=live_emulator.model, config=asked):
        pass
    setup = live_emulator.recorder.last().setup
    assert setup["generationConfig"]["temperature"] == 0.2
    # systemInstruction was set by the token, so `[...]` locks it too (fieldMask has it).
    assert setup["systemInstruction"]["parts"][0]["text"] == "default"
    assert setup["generationConfig"]["responseModalities"] == ["TEXT"]


async def test_token_rest_rejects_bad_key(live_emulator_cert_dir):
    async with running_emulator(
        cert_dir=live_emulator_cert_dir, api_keys=frozenset({"good"})
    ) as emu:
        client = emu.make_client(api_key="bad", api_version="v1alpha")
        with pytest.raises(errors.ClientError) as excinfo:
            await client.aio.auth_tokens.create(config=types.CreateAuthTokenConfig(uses=1))
        assert excinfo.value.code == 400
        good = emu.make_client(api_key="good", api_version="v1alpha")
        token = await good.aio.auth_tokens.create()
        assert token.name.startswith("auth_tokens/")


async def test_token_rest_rejects_past_expiry(live_emulator):
    with pytest.raises(errors.ClientError) as excinfo:
        await create_token(live_emulator, expire_time=now() - dt.timedelta(minutes=1))
    assert excinfo.value.code == 400


def test_token_create_with_sync_client(live_emulator_cert_dir):
    from voice_platform.live_emulator.testing import emulator_in_thread

    with emulator_in_thread(cert_dir=live_emulator_cert_dir) as emu:
        client = emu.make_client(api_version="v1alpha")
        token = client.auth_tokens.create(config=types.CreateAuthTokenConfig(uses=3))
        assert token.uses == 3
