"""`voice-agent talk` against a real platform (Daphne + the Live emulator), as a user runs it."""

from __future__ import annotations

import asyncio
import json
import signal

import numpy as np
import pytest
import websockets
from channels.db import database_sync_to_async

from tests.factories import AgentFactory
from tests.sessions.conftest import issue_token
from tests.tcp_proxy import TcpProxy
from tests.voice_client.conftest import Console, run_console
from tests.voice_client.daphne_settings import AUTH_FAILURE_LIMIT
from voice_client import audio, protocol

pytestmark = pytest.mark.django_db(transaction=True)


def model_text(console: Console) -> str:
    spoken = ("model: ", "model (speech): ")
    return "".join(line.split(": ", 1)[1] for line in console.lines if line.startswith(spoken))


def session_ids(console: Console) -> list[str]:
    return [
        line.split("session=")[1].split()[0]
        for line in console.lines
        if line.startswith("session.started")
    ]


async def test_a_wav_goes_up_as_16k_audio_and_the_spoken_reply_is_saved(
    alice, live_emulator, server, tmp_path
):
    agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, response_modality="AUDIO"
    )
    # 48 kHz stereo, so the console has to mix down and resample: speech, then a pause.
    speech = np.concatenate([audio.sine(440.0, 48000, 0.8, 0.3), np.zeros(57600, np.float32)])
    question = tmp_path / "question.wav"
    audio.write_wav(question, audio.float32_to_pcm16(np.repeat(speech, 2)), 48000, channels=2)
    seconds = audio.read_wav(question).duration
    reply = tmp_path / "reply.wav"

    console = await run_console(
        "talk", "--url", server.url, "--token", await issue_token(agent),
        "--wav", question, "--save", reply,
    )  # fmt: skip

    assert console.proc.returncode == 0, console.stderr
    assert console.count("turn_complete") >= 1
    saved = audio.read_wav(reply)
    assert (saved.rate, saved.channels) == (24000, 1)
    assert saved.duration > 0.1
    assert float(np.abs(saved.mono()).max()) > 0.05  # a voice, not silence
    heard = sum(record.audio_seconds for record in live_emulator.recorder.sessions)
    assert heard == pytest.approx(seconds, abs=0.1)


async def test_text_turns_with_a_token_minted_from_an_api_key(alice, live_emulator, server):
    agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, response_modality="TEXT"
    )
    console = await run_console(
        "talk", "--url", server.url, "--api-key", alice.api_key, "--agent", str(agent.pk),
        "--text", "hello there", "--text", "and once more",
    )  # fmt: skip

    assert console.proc.returncode == 0, console.stderr
    assert console.count("turn_complete") == 2
    # Streamed pieces are printed as one line per utterance (the emulator echoes the text).
    assert "model: You said: hello there" in console.lines
    said = model_text(console)
    assert "hello there" in said
    assert "and once more" in said
    assert said.index("hello there") < said.index("and once more")
    upstream = [text for record in live_emulator.recorder.sessions for text in record.texts]
    assert upstream == ["hello there", "and once more"]
    assert console.lines[-1] == 'session.ended {"reason":"client_closed"}'


@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_the_console_resumes_after_the_network_dropped(
    alice, live_emulator, server, modality
):
    agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, response_modality=modality
    )
    token = await issue_token(agent)
    async with TcpProxy("127.0.0.1", server.port) as proxy:
        console = await Console.start(
            "talk", "--url", f"ws://127.0.0.1:{proxy.port}", "--token", token, stdin=True
        )
        await console.say("the first question")
        await console.wait_for("turn_complete")
        assert proxy.drop() == 1  # reset both ways, no close frame
        await console.wait_for("session.started", count=2)
        await console.say("the second question")
        await console.wait_for("turn_complete", count=2)
        assert await console.finish() == 0, console.stderr

    first, again = session_ids(console)
    assert first == again  # the same session, resumed
    assert console.count("client: " + protocol.close_code(None).message) == 1
    assert "the second question" in model_text(console) or modality == "AUDIO"
    upstream = [text for record in live_emulator.recorder.sessions for text in record.texts]
    assert "the second question" in upstream
    assert proxy.connections == 2


async def test_a_stopping_server_4012_is_resumed_on_another_process(
    alice, live_emulator, start_server
):
    first, second = start_server(), start_server()
    agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, response_modality="AUDIO"
    )
    async with TcpProxy("127.0.0.1", first.port) as balancer:
        console = await Console.start(
            "talk", "--url", f"ws://127.0.0.1:{balancer.port}", "--token",
            await issue_token(agent), stdin=True,
        )  # fmt: skip
        await console.say("before the deploy")
        await console.wait_for("turn_complete")
        balancer.upstream_port = second.port  # new connections go to the running process
        first.proc.send_signal(signal.SIGTERM)
        await console.wait_for("session.started", count=2)
        await console.say("after the deploy")
        await console.wait_for("turn_complete", count=2)
        assert await console.finish() == 0, console.stderr

    assert 'session.ended {"reason":"server_restart"}' in console.lines
    assert console.count("client: " + protocol.close_code(4012).message) == 1
    assert len(set(session_ids(console))) == 1
    assert "after the deploy" in live_emulator.recorder.last().texts


async def _bogus_attempts(url: str, count: int) -> None:
    for n in range(count):
        async with websockets.connect(f"{url}/ws/v1/live?token=ct_guess{n}") as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)


@pytest.mark.parametrize(
    ("case", "code"),
    [("bad_token", 4001), ("disabled_agent", 4003), ("origin", 4003),
     ("tenant_limit", 4029), ("too_many_failures", 4030)],
)  # fmt: skip
async def test_each_refusal_exits_non_zero_with_its_code_and_message(
    alice, live_emulator, server, case, code
):
    agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, allowed_origins=["https://shop.example"]
    )
    token = await issue_token(agent)
    args = ["talk", "--url", server.url, "--token", token, "--text", "hello"]
    holder = None
    if case == "bad_token":
        args[4] = "ct_" + "0" * 43
    elif case == "disabled_agent":
        agent.enabled = False
        await database_sync_to_async(agent.save)()
    elif case == "origin":
        args += ["--origin", "https://evil.example"]
    elif case == "tenant_limit":
        alice.tenant.max_concurrent_sessions = 1
        await database_sync_to_async(alice.tenant.save)()
        other = await issue_token(agent)
        holder = await websockets.connect(f"{server.url}/ws/v1/live?token={other}")
        assert json.loads(await holder.recv())["type"] == "session.started"
    else:
        await _bogus_attempts(server.url, AUTH_FAILURE_LIMIT)

    upstream_before = len(live_emulator.recorder.sessions)
    console = await run_console(*args)
    if holder is not None:
        await holder.close()

    assert console.proc.returncode == 1
    meaning = protocol.close_code(code)
    line = console.stderr.strip()
    assert line.startswith(f"voice-agent: refused ({code} {meaning.name}): {meaning.message}")
    assert "\n" not in line
    assert token not in console.stderr + console.stdout  # credentials are never printed
    assert len(live_emulator.recorder.sessions) == upstream_before  # nothing reached the model


async def test_a_refused_token_request_exits_non_zero_with_the_apis_reason(alice, server):
    agent = await database_sync_to_async(AgentFactory)(tenant=alice.tenant)
    console = await run_console(
        "talk", "--url", server.url, "--api-key", "vp_not_a_key", "--agent", str(agent.pk),
        "--text", "hello",
    )  # fmt: skip
    assert console.proc.returncode == 1
    assert console.stderr.startswith("voice-agent: token request failed (HTTP 401): ")


async def test_bad_arguments_exit_2_before_connecting(tmp_path):
    missing = await run_console("talk", "--url", "ws://127.0.0.1:9", "--token", "t", "--wav",
                                tmp_path / "nope.wav")  # fmt: skip
    assert missing.proc.returncode == 2
    assert missing.stderr.startswith("voice-agent: cannot read ")
    empty = tmp_path / "empty.wav"
    audio.write_wav(empty, b"", rate=16000)
    nothing = await run_console("talk", "--url", "ws://127.0.0.1:9", "--token", "t", "--wav", empty)
    assert nothing.proc.returncode == 2
    assert nothing.stderr.strip() == f"voice-agent: {empty} holds no audio"
    both = await run_console("talk", "--url", "ws://127.0.0.1:9", "--token", "t", "--api-key", "k")
    assert both.proc.returncode == 2
    assert "either --token or --api-key" in both.stderr
