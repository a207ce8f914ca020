"""`voice-agent talk` against a real platform (Daphne + the Live emulator), as a user runs it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal

import numpy as np
import pytest
import websockets
from channels.db import database_sync_to_async
from django.conf import settings

from sessions.close_codes import close_reason
from sessions.models import VoiceSession
from tests.factories import AgentFactory
from tests.sessions.conftest import issue_token
from tests.tcp_proxy import TcpProxy
from tests.voice_client.conftest import Console, run_console
from tests.voice_client.daphne_settings import AUTH_FAILURE_LIMIT
from voice_client import audio, protocol
from voice_client.credentials import API_KEY_ENV, TOKEN_ENV

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
    token_file = tmp_path / "token"
    token_file.write_text(await issue_token(agent) + "\n")  # as `echo` leaves it

    console = await run_console(
        "talk", "--url", server.url, "--token-file", token_file,
        "--wav", question, "--save", reply, "--playback-report",
    )  # fmt: skip

    assert console.proc.returncode == 0, console.stderr
    assert console.count("turn_complete") >= 1
    saved = audio.read_wav(reply)
    assert (saved.rate, saved.channels) == (24000, 1)
    assert saved.duration > 0.1
    assert float(np.abs(saved.mono()).max()) > 0.05  # a voice, not silence
    heard = sum(record.audio_seconds for record in live_emulator.recorder.sessions)
    assert heard == pytest.approx(seconds, abs=0.1)
    # Asked to, the console reported playback.started for the spoken reply as its audio arrived: the
    # server timed the turn's voice-to-voice latency from it (after the reply went out).
    [session_id] = session_ids(console)
    session = await database_sync_to_async(VoiceSession.unscoped.get)(pk=session_id)
    spoken = [t for t in session.turn_timings if t["audio"]]
    assert spoken, session.turn_timings
    for timing in spoken:
        assert timing["playback_ms"] is not None, session.turn_timings
        assert timing["playback_ms"] >= timing["reply_out_ms"]


async def test_text_turns_with_a_token_minted_from_an_api_key_in_the_environment(
    alice, live_emulator, server
):
    agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, response_modality="TEXT"
    )
    console = await run_console(
        "talk", "--url", server.url, "--agent", str(agent.pk),
        "--text", "hello there", "--text", "and once more",
        env={API_KEY_ENV: alice.api_key},
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
    # The event log has every event (schema-checked by the fixture), the token masked.
    kinds = [event["type"] for event in console.events]
    assert kinds[0] == "session.started"
    assert kinds.count("turn_complete") == 2
    assert kinds[-1] == "session.ended"
    assert console.events[0]["resume_token"] == "rt_<masked>"


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


# The close reason each refusal's server sends (sessions/close_codes.py), by test case.
SERVER_REASONS = {
    "bad_token": close_reason(4001),
    "disabled_agent": close_reason(4003, "agent_disabled"),
    "origin": close_reason(4003, "origin_not_allowed"),
    "tenant_limit": close_reason(4029),
    "too_many_failures": close_reason(4030),
    "database_down": close_reason(4013),
}


@pytest.mark.parametrize(
    ("case", "code"),
    [("bad_token", 4001), ("disabled_agent", 4003), ("origin", 4003),
     ("tenant_limit", 4029), ("too_many_failures", 4030), ("database_down", 4013)],
)  # fmt: skip
async def test_each_refusal_exits_non_zero_with_its_code_the_servers_reason_and_keeps_save(
    alice, live_emulator, start_server, tmp_path, case, code
):
    agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, allowed_origins=["https://shop.example"]
    )
    token = await issue_token(agent)
    env = {TOKEN_ENV: token}
    # An earlier run's reply: a refused session has nothing to save and must not replace it.
    reply = tmp_path / "reply.wav"
    audio.write_wav(reply, audio.tone(0.2, rate=audio.OUTPUT_RATE))
    kept = reply.read_bytes()
    holder = None
    async with contextlib.AsyncExitStack() as stack:
        if case == "database_down":
            # PostgreSQL behind a gate the test shuts: the handshake cannot open the session.
            database = settings.DATABASES["default"]
            gate = TcpProxy("127.0.0.1", int(database.get("PORT") or 5432))
            await stack.enter_async_context(gate)
            server = start_server(database_port=gate.port)
            gate.shut()
        else:
            server = start_server()
        args = ["talk", "--url", server.url, "--text", "hello", "--save", reply]
        if case == "bad_token":
            env[TOKEN_ENV] = "ct_" + "0" * 43
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
        elif case == "too_many_failures":
            await _bogus_attempts(server.url, AUTH_FAILURE_LIMIT)

        upstream_before = len(live_emulator.recorder.sessions)
        console = await run_console(*args, env=env)
        if holder is not None:
            await holder.close()

    assert console.proc.returncode == 1
    meaning = protocol.close_code(code)
    line = console.stderr.strip()
    assert line.startswith(f"voice-agent: refused ({code} {meaning.name}): {meaning.message}")
    assert f" [server: {SERVER_REASONS[case]}]" in line  # the server's own words reached the user
    assert "\n" not in line
    assert token not in console.stderr + console.stdout  # credentials are never printed
    assert len(live_emulator.recorder.sessions) == upstream_before  # nothing reached the model
    assert reply.read_bytes() == kept
    if case == "database_down":  # the one refusal with an event first: when to try again
        [unavailable] = console.events
        assert (unavailable["type"], unavailable["code"]) == ("error", "unavailable")
        assert unavailable["retry_after"] > 0
        assert line.endswith(f"(retry after {unavailable['retry_after']} s)")
    else:
        assert console.events == []


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
    assert "give one credential, not --token and --api-key" in both.stderr


@pytest.mark.parametrize(
    ("options", "env", "status", "says"),
    [([], {}, 2, "no credential: set VOICE_AGENT_TOKEN"),
     ([], {TOKEN_ENV: "ct_x", API_KEY_ENV: "vp_x"}, 2, "both VOICE_AGENT_TOKEN and"),
     ([], {API_KEY_ENV: "vp_x"}, 2, "an API key (from VOICE_AGENT_API_KEY) needs --agent"),
     (["--token-file", "{tmp}/absent"], {}, 2, "cannot read --token-file {tmp}/absent"),
     (["--api-key-file", "{tmp}/blank", "--agent", "1"], {}, 2, "{tmp}/blank is empty"),
     # An option wins over the environment: the token is used (and the port refuses).
     (["--token", "ct_x"], {API_KEY_ENV: "vp_x"}, 1, "cannot connect"),
     ([], {TOKEN_ENV: "ct_x"}, 1, "cannot connect")],
)  # fmt: skip
async def test_where_the_credential_comes_from(tmp_path, options, env, status, says):
    (tmp_path / "blank").write_text("\n")
    options = [option.replace("{tmp}", str(tmp_path)) for option in options]
    console = await run_console(
        "talk", "--url", "ws://127.0.0.1:9", "--text", "hi", *options, env=env
    )
    assert console.proc.returncode == status, console.stderr
    assert says.replace("{tmp}", str(tmp_path)) in console.stderr
    for secret in ("ct_x", "vp_x"):
        assert secret not in console.stderr
