"""The handshake: paths, credentials, and bad setups as close codes the SDK surfaces."""

from __future__ import annotations

import pytest
import websockets
from google import genai
from google.genai import errors, types

from voice_platform.live_emulator.testing import running_emulator

from .helpers import send_text, text_of, turn


async def test_setup_unknown_model_closes_1008(live_emulator, live_client):
    with pytest.raises(errors.APIError) as excinfo:
        async with live_client.aio.live.connect(model="gemini-2.0-flash-live-001"):
            pass
    assert excinfo.value.code == 1008
    assert excinfo.value.details.startswith("models/gemini-2.0-flash-live-001 is not found")
    assert len(excinfo.value.details.encode()) <= 123


async def test_setup_model_without_models_prefix_closes_1007(live_emulator, live_client):
    # `tunedModels/...` is passed through by the SDK; Live needs `models/...`.
    with pytest.raises(errors.APIError) as excinfo:
        async with live_client.aio.live.connect(model="tunedModels/my-tune"):
            pass
    assert excinfo.value.code == 1007


async def test_setup_malformed_json_closes_1007(live_emulator):
    # The SDK cannot send broken JSON: a raw client is the only way to produce it.
    url = live_emulator.base_url.replace("https", "wss")
    path = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    async with websockets.connect(
        url + path, ssl=live_emulator.ssl_context, additional_headers={"x-goog-api-key": "k"}
    ) as ws:
        await ws.send('{"setup": {"model": ')
        with pytest.raises(websockets.ConnectionClosed) as excinfo:
            await ws.recv()
    assert excinfo.value.rcvd.code == 1007


async def test_setup_bad_api_key_closes_1008(live_emulator_cert_dir):
    async with running_emulator(cert_dir=live_emulator_cert_dir, api_keys=frozenset({"k1"})) as emu:
        with pytest.raises(errors.APIError) as excinfo:
            async with emu.make_client(api_key="nope").aio.live.connect(model=emu.model):
                pass
        assert excinfo.value.code == 1008
        assert excinfo.value.details == "API key not valid. Please pass a valid API key."
        async with emu.make_client(api_key="k1").aio.live.connect(model=emu.model) as s:
            assert s.setup_complete is not None


@pytest.mark.parametrize("api_version", ["v1", "v1beta", "v1alpha"])
async def test_setup_every_api_version_path(live_emulator, api_version):
    client = live_emulator.make_client(api_version=api_version)
    config = {"response_modalities": ["TEXT"]}
    async with client.aio.live.connect(model=live_emulator.model, config=config) as s:
        await send_text(s, api_version)
        assert text_of(await turn(s)) == f"You said: {api_version}"
    assert f".{api_version}.GenerativeService" in live_emulator.recorder.last().path


async def test_setup_base_url_prefix_and_trailing_slash(live_emulator):
    for base in (live_emulator.base_url + "/gemini", live_emulator.base_url + "/"):
        client = genai.Client(
            api_key="k",
            http_options=types.HttpOptions(
                base_url=base,
                api_version="v1beta",
                async_client_args={"ssl": live_emulator.ssl_context},
            ),
        )
        async with client.aio.live.connect(model=live_emulator.model) as s:
            assert s.setup_complete is not None
    paths = [r.path for r in live_emulator.recorder.sessions]
    assert paths[0].startswith("/gemini/ws/")
    assert paths[1].startswith("//ws/")


async def test_setup_records_snake_and_camel_config_normalised(live_emulator, live_client):
    config = types.LiveConnectConfig(
        response_modalities=["AUDIO"],
        speech_config=types.SpeechConfig(
            voice_config=types.VoiceConfig(
                prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name="Kore")
            )
        ),
        tools=[
            types.Tool(
                function_declarations=[
                    types.FunctionDeclaration(
                        name="f",
                        parameters=types.Schema(
                            type="OBJECT",
                            properties={"snake_case_arg": types.Schema(type="STRING")},
                        ),
                    )
                ]
            )
        ],
    )
    async with live_client.aio.live.connect(model=live_emulator.model, config=config):
        pass
    setup = live_emulator.recorder.last().setup
    voice = setup["generationConfig"]["speechConfig"]["voiceConfig"]
    assert voice["prebuiltVoiceConfig"]["voiceName"] == "Kore"
    # Free-form schema property names keep their spelling.
    params = setup["tools"][0]["functionDeclarations"][0]["parameters"]
    assert "snake_case_arg" in params["properties"]


async def test_setup_unknown_path_closes_1008(live_emulator):
    url = live_emulator.base_url.replace("https", "wss") + "/ws/not.the.right.Method"
    async with websockets.connect(url, ssl=live_emulator.ssl_context) as ws:
        await ws.send('{"setup": {"model": "models/x"}}')
        with pytest.raises(websockets.ConnectionClosed) as excinfo:
            await ws.recv()
    assert excinfo.value.rcvd.code == 1008
