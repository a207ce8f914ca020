"""Network faults between the platform and Gemini, through a TCP proxy (issue 12).

The bridge's upstream goes through `tcp_proxy.TcpProxy` to the emulator: real sessions,
the real consumer, bridge and SDK, TLS end to end (the proxy only forwards bytes). Added
latency, a connection reset mid-turn and a black hole, for TEXT and AUDIO agents. The
emulator's own fault injection is not used here: these faults happen on the wire, where
neither the SDK nor the emulator can see them coming.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async

from tests.factories import AgentFactory
from tests.sessions.conftest import Client, speak
from tests.sessions.test_live_resilience import start, stored
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db(transaction=True)

MODALITIES = ["TEXT", "AUDIO"]


@pytest.fixture
def live_emulator_settings() -> dict[str, Any]:
    return {"pace": 4.0}


@pytest_asyncio.fixture
async def proxy(live_emulator: Any) -> AsyncIterator[TcpProxy]:
    async with TcpProxy("127.0.0.1", live_emulator.port) as running:
        yield running


@pytest.fixture
def proxied(live_settings: Any, proxy: TcpProxy) -> Any:
    """The bridge reaches the emulator only through the proxy (same host name: the
    certificate still matches)."""
    live_settings.LIVE_API_BASE_URL = proxy.base_url
    return live_settings


@database_sync_to_async
def make_agent(tenant: Any, modality: str) -> Any:
    return AgentFactory(
        tenant=tenant,
        response_modality=modality,
        input_transcription=modality == "AUDIO",
        output_transcription=modality == "AUDIO",
    )


async def ask(client: Client, modality: str, text: str) -> None:
    """A text turn, or (AUDIO) an utterance: its speech goes up at real time."""
    if modality == "TEXT":
        await client.send(type="text", text=text)
    else:
        await speak(client)


async def reply_begun(client: Client, modality: str) -> None:
    """Receive until the first piece of the model's answer to the turn just asked."""
    seen = len(client.audio) if modality == "AUDIO" else len(client.of("text"))
    async with asyncio.timeout(10):
        while (len(client.audio) if modality == "AUDIO" else len(client.of("text"))) <= seen:
            assert await client.recv() is not None, f"closed: {client.order}"


async def close_and_check(client: Client, session_id: str) -> list[tuple[str, str]]:
    """The client closes; the session is ended for good, every turn once, answered once."""
    await client.send(type="close")
    await client.until_closed()
    session, entries = await stored(session_id)
    assert (session.status, session.end_reason) == ("ended", "client_closed")
    assert [role for role, _ in entries] == ["user", "model"] * session.turns
    assert all(text.startswith("You said: ") for role, text in entries if role == "model")
    return entries


# --- the proxy itself, against a plain echo server ---------------------------------------------


@pytest_asyncio.fixture
async def echo_proxy() -> AsyncIterator[tuple[TcpProxy, list[bytes]]]:
    received: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            received.append(data)
            writer.write(data)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    async with TcpProxy("127.0.0.1", server.sockets[0].getsockname()[1]) as proxy:
        yield proxy, received
    server.close()


async def test_tcp_proxy_delays_each_direction(echo_proxy):
    proxy, _ = echo_proxy
    proxy.latency = 0.1
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    began = time.monotonic()
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    assert time.monotonic() - began >= 0.2, "100 ms up and 100 ms down"
    writer.close()


async def test_tcp_proxy_drop_resets_the_connection(echo_proxy):
    proxy, _ = echo_proxy
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"x")
    await reader.readexactly(1)
    assert proxy.drop() == 1
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(1), 2)


async def test_tcp_proxy_black_hole_swallows_bytes_and_keeps_the_socket_open(echo_proxy):
    proxy, received = echo_proxy
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"x")
    await reader.readexactly(1)
    assert proxy.black_hole() == 1
    writer.write(b"into the hole")
    await writer.drain()
    with pytest.raises(TimeoutError):  # no answer, and no EOF or reset either
        await asyncio.wait_for(reader.read(1), 0.5)
    assert received == [b"x"]
    assert proxy.stats()["swallowed"] == len(b"into the hole")
    writer.close()


# --- live sessions through the proxy ------------------------------------------------------------


@pytest.mark.parametrize("modality", MODALITIES)
async def test_a_conversation_works_with_150_ms_added_each_way(
    alice, proxied, proxy, live_emulator, modality
):
    proxy.latency = 0.15
    agent = await make_agent(alice.tenant, modality)
    began = time.monotonic()
    client, session_id = await start(agent)
    # TLS, the WebSocket upgrade and setup are round trips through the delay.
    assert time.monotonic() - began >= 0.3
    await ask(client, modality, "one")
    await client.until("turn_complete", timeout=15)
    await asyncio.sleep(1.0)  # idle: our pings and their pongs cross the delay too
    assert not client.of("session.reconnecting"), "latency is not a fault"
    if modality == "TEXT":
        assert client.texts("text") == "You said: one"
    else:
        assert client.audio
        assert client.texts("transcript.output").startswith("You said: ")
    entries = await close_and_check(client, session_id)
    assert len(entries) == 2
    assert proxy.connections == 1
    assert proxy.bytes_forwarded > 0
    record = live_emulator.recorder.last()
    await live_emulator.recorder.wait_closed(record)  # the close is 150 ms away
    assert record.closed_by == "client", "the bridge ended it, not a timeout"


@pytest.mark.parametrize("modality", MODALITIES)
async def test_a_drop_mid_turn_resumes_and_the_turn_is_answered_once(
    alice, proxied, proxy, live_emulator, modality
):
    agent = await make_agent(alice.tenant, modality)
    live_emulator.fail_next(pace=0.3)  # a slow answer on the first connection: time to cut it
    client, session_id = await start(agent)
    await ask(client, modality, "first turn")
    await client.until("turn_complete", timeout=15)
    await ask(client, modality, "second turn")
    await reply_begun(client, modality)
    assert proxy.drop() == 1, "cut while the model is answering"
    reconnecting = await client.until("session.reconnecting", timeout=10)
    assert reconnecting["reason"] == "connection_lost"
    await client.until("session.resumed", timeout=15)
    await client.until("turn_complete", timeout=15)
    assert len(client.of("turn_complete")) == 2
    first, second = live_emulator.recorder.sessions[:2]
    assert second.resumed
    assert second.client_setup["sessionResumption"]["handle"] == first.handles[-1]
    if modality == "TEXT":
        assert second.texts == ["second turn"], "the turn in flight asked again, only it"
        assert client.texts("text").endswith("You said: second turn")
    else:
        assert second.audio_seconds > 0, "the utterance in flight replayed"
    entries = await close_and_check(client, session_id)
    assert len(entries) == 4, "each turn once, answered once"
    session, _ = await stored(session_id)
    assert [entry["cause"] for entry in session.reconnect_log] == ["connection_lost"]
    assert proxy.connections == 2


@pytest.mark.parametrize("modality", MODALITIES)
async def test_a_black_hole_is_noticed_within_5_s_and_the_user_gets_an_answer(
    alice, proxied, proxy, live_emulator, modality
):
    agent = await make_agent(alice.tenant, modality)
    client, session_id = await start(agent)
    assert proxy.black_hole() == 1
    asked = time.monotonic()
    await ask(client, modality, "into the hole")
    if modality == "TEXT":
        asked = time.monotonic()  # the turn has ended: a reply is due
    else:
        asked += 0.6  # when the user stopped speaking (speak() sends 600 ms of speech)
    reconnecting = await client.until("session.reconnecting", timeout=10)
    assert time.monotonic() - asked < 5.0
    assert reconnecting["reason"] == "upstream_unresponsive"
    await client.until("session.resumed", timeout=15)
    await client.until("turn_complete", timeout=15)
    assert proxy.stats()["swallowed"] > 0, "the turn went into the hole"
    if modality == "TEXT":
        assert client.texts("text") == "You said: into the hole"
    entries = await close_and_check(client, session_id)
    assert len(entries) == 2, "asked again on the new connection, answered once"
    session, _ = await stored(session_id)
    assert [entry["cause"] for entry in session.reconnect_log] == ["upstream_unresponsive"]


async def test_a_black_hole_while_nothing_is_due_is_noticed_by_the_idle_timeout(
    alice, proxied, proxy, live_emulator
):
    proxied.LIVE_IDLE_TIMEOUT = 3.0
    agent = await make_agent(alice.tenant, "TEXT")
    client, session_id = await start(agent)
    assert proxy.black_hole() == 1
    went_dark = time.monotonic()
    reconnecting = await client.until("session.reconnecting", timeout=10)
    assert reconnecting["reason"] == "upstream_unresponsive"
    assert 2.5 < time.monotonic() - went_dark < 4.5
    await client.until("session.resumed", timeout=15)
    await ask(client, "TEXT", "after the hole")
    await client.until("turn_complete", timeout=15)
    assert client.texts("text") == "You said: after the hole"
    await close_and_check(client, session_id)
