"""Every close the platform makes carries its documented reason text in the close frame,
seen by a real client of a real Daphne process (Daphne alone drops the reason; see
voice_platform/daphne_options.py), and by the in-process harness."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from channels.db import database_sync_to_async
from django.db import OperationalError
from websockets.exceptions import ConnectionClosed

from conftest import require_postgres, require_redis
from sessions.close_codes import CLOSE_REASONS, CloseCode
from tests.factories import AgentFactory
from tests.processes import live_env, start_daphne, stop_processes, until
from tests.sessions.conftest import assert_protocol, issue_token, open_client, tone
from voice_platform.tenancy.models import Tenant

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def daphne_port(live_emulator: Any, tmp_path: Path) -> Iterator[int]:
    require_postgres()
    proc, port = start_daphne(live_env(live_emulator, require_redis()), tmp_path / "daphne.log")
    try:
        yield port
    finally:
        stop_processes([proc])
        print((tmp_path / "daphne.log").read_text()[-3000:])


async def close_of(ws: Any) -> tuple[int, str]:
    """Read to the end (checking each JSON event against the schema): the close frame."""
    try:
        while True:
            message = await ws.recv()
            if isinstance(message, str):
                assert_protocol(json.loads(message), "serverEvent")
    except ConnectionClosed:
        pass
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason


def expected(code: CloseCode) -> tuple[int, str]:
    return int(code), CLOSE_REASONS[code]


@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_refusals_and_session_closes_carry_their_reason_over_a_real_daphne(
    alice, live_settings, daphne_port, modality
):
    base = f"ws://127.0.0.1:{daphne_port}/ws/v1/live"
    await database_sync_to_async(Tenant.objects.filter(pk=alice.tenant.pk).update)(
        max_concurrent_sessions=1
    )
    agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant,
        response_modality=modality,
        allowed_origins=["https://app.example.com"],
    )
    token = await issue_token(agent, uses=2)

    # 4003: the origin is not the agent's (the use is kept).
    async with websockets.connect(f"{base}?token={token}", origin="https://evil.example.net") as ws:
        assert await close_of(ws) == (4003, "origin not allowed")

    async with websockets.connect(f"{base}?token={token}") as first:
        started = await until(first, "session.started")
        assert_protocol(started, "serverEvent")
        # 4029: the tenant's one session is taken.
        async with websockets.connect(f"{base}?token={await issue_token(agent)}") as ws:
            assert await close_of(ws) == expected(CloseCode.TENANT_LIMIT)
        # A malformed audio frame ends the session: 4009.
        await first.send(tone(100)[:-1])
        assert await close_of(first) == expected(CloseCode.BAD_FRAME)

    async with websockets.connect(f"{base}?token={token}") as second:
        started = await until(second, "session.started")
        # 4000: the session resumed on another connection.
        async with websockets.connect(f"{base}?resume={started['resume_token']}") as third:
            await until(third, "session.started")
            assert await close_of(second) == expected(CloseCode.SUPERSEDED)
            await third.send(json.dumps({"type": "close"}))
            assert await close_of(third) == expected(CloseCode.NORMAL)

    # 4001: the token's two uses are spent (a known token: no failed attempt counted).
    async with websockets.connect(f"{base}?token={token}") as ws:
        assert await close_of(ws) == expected(CloseCode.UNAUTHENTICATED)


@pytest.mark.parametrize("modality", ["TEXT", "AUDIO"])
async def test_the_in_process_harness_sees_the_reason_too(alice, live_settings, modality):
    agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, response_modality=modality
    )
    client = await open_client(f"token={await issue_token(agent)}")
    await client.until("session.started")
    # Over the burst of 300 frames: 4008. Well over it: the bucket refills at 100 frames
    # a second while a slow (loaded) machine works through them.
    for _ in range(2000):
        await client.send(type="ping", id=1)
    assert await client.until_closed() == CloseCode.POLICY
    assert client.close_reason == CLOSE_REASONS[CloseCode.POLICY]
    assert client.of("session.ended")[-1]["reason"] == "rate_limited"


def _refuse_with(monkeypatch: pytest.MonkeyPatch, refusal: str) -> None:
    """Put the consumer in the state that makes it refuse ``refusal`` at the handshake."""
    import sessions.consumers as consumers
    import sessions.transport_consumer as transport_consumer

    if refusal == "draining":
        monkeypatch.setattr(consumers, "draining", lambda: True)
    elif refusal == "blocked":
        monkeypatch.setattr(consumers, "auth_failure_retry_after", lambda **_: 60)
    else:  # the database goes away between the credential's lookup and the session

        def database_down(**_: Any) -> None:
            raise OperationalError("connection refused")

        monkeypatch.setattr(transport_consumer, "live_session_start", database_down)


@pytest.mark.parametrize(
    ("refusal", "code"),
    [
        ("draining", CloseCode.SERVER_RESTART),
        ("blocked", CloseCode.TOO_MANY_FAILURES),
        ("database_down", CloseCode.BUSY),
    ],
)
async def test_the_other_handshake_refusals_carry_their_reason(
    alice, live_settings, monkeypatch, refusal, code
):
    agent = await database_sync_to_async(AgentFactory)(tenant=alice.tenant)
    token = await issue_token(agent)
    _refuse_with(monkeypatch, refusal)
    client = await open_client(f"token={token}")
    assert await client.until_closed() == code
    assert client.close_reason == CLOSE_REASONS[code]
    if refusal == "database_down":  # the one refusal with an event first
        assert [e["code"] for e in client.events] == ["unavailable"]
        assert client.events[0]["retry_after"] > 0
    else:
        assert client.events == []
