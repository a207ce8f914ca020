"""The metrics move as real sessions through the emulator go: in this process, and summed
over two Daphne processes sharing one PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import websockets
from channels.db import database_sync_to_async
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from conftest import require_postgres, require_redis
from tests.factories import AgentFactory
from tests.processes import live_env, start_daphne, stop_processes, until
from tests.sessions import conftest as session_fixtures
from tests.sessions.conftest import issue_token, open_client, silence
from tools.services import agent_tool_create, tool_sync_registry
from voice_platform.observability import loop_lag
from voice_platform.tenancy.scope import tenant_scope

pytestmark = pytest.mark.django_db(transaction=True)
# The live-session fixtures of tests/sessions/ (a conftest reaches only its own folder).
live_settings = session_fixtures.live_settings
no_leaked_tasks = session_fixtures.no_leaked_tasks

TOKEN = "metrics-token-0123456789abcdef"
GENAI = {
    "gen_ai_operation_name": "generate_content",
    "gen_ai_provider_name": "gcp.gemini",
}
TTFC = "gen_ai_client_operation_time_to_first_chunk_seconds"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def eventually(check: Callable[[], bool], timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


@database_sync_to_async
def agent_with_slow_tool(tenant):
    tool_sync_registry()
    agent = AgentFactory(tenant=tenant, response_modality="AUDIO")
    with tenant_scope(tenant.pk):
        agent_tool_create(tenant=tenant, agent=agent, tool_name="slow_tool")
    return agent


async def answered_turn(client, text: str) -> None:
    """Ask, report playback at the reply's first audio (as a client does), wait it out."""
    await client.send(type="text", text=text)
    async with asyncio.timeout(15):
        while not isinstance(got := await client.recv(), bytes):
            assert got is not None, f"closed: {client.order}"
    await client.send(type="playback.started")
    await client.until("turn_complete")


async def test_metrics_follow_a_session_with_a_tool_a_reconnect_and_a_slow_reply(
    alice, live_settings, live_emulator
):
    live_settings.TOOL_EXECUTION = "inprocess"  # the tool's time, without a worker's start-up
    agent = await agent_with_slow_tool(alice.tenant)
    model = {**GENAI, "gen_ai_request_model": agent.model}
    slug = alice.tenant.slug
    names = {
        "active": ("voice_sessions_active", {}),
        "started": ("voice_sessions_started_total", {"tenant": slug, "resumed": "no"}),
        "ended": ("voice_sessions_ended_total", {"tenant": slug, "reason": "client_closed"}),
        "reconnects": ("voice_upstream_reconnects_total",
                       {"cause": "connection_lost", "recovered": "yes"}),
        "gaps": ("voice_upstream_reconnect_gap_seconds_count", {}),
        "frames_in": ("voice_audio_frames_total", {"direction": "in"}),
        "bytes_in": ("voice_audio_bytes_total", {"direction": "in"}),
        "frames_out": ("voice_audio_frames_total", {"direction": "out"}),
        "bytes_out": ("voice_audio_bytes_total", {"direction": "out"}),
        "tokens_in": ("gen_ai_client_token_usage_sum", {**model, "gen_ai_token_type": "input"}),
        "tokens_out": ("gen_ai_client_token_usage_sum", {**model, "gen_ai_token_type": "output"}),
        "turns": ("voice_turns_total", {"outcome": "complete"}),
        "ttfc_count": (f"{TTFC}_count", model),
        "ttfc_sum": (f"{TTFC}_sum", model),
        "reply_out": ("voice_turn_reply_out_seconds_count", {}),
        "playback": ("voice_turn_playback_seconds_count", {}),
        "turn_tool": ("voice_turn_tool_seconds_sum", {}),
        "tool_calls": ("voice_tool_calls_total",
                       {"tenant": slug, "tool": "slow_tool", "status": "succeeded"}),
        "tool_sum": ("gen_ai_execute_tool_duration_seconds_sum",
                     {"gen_ai_operation_name": "execute_tool", "gen_ai_tool_name": "slow_tool"}),
        "lag_samples": ("voice_event_loop_wakeup_lag_seconds_count", {}),
    }  # fmt: skip

    def read() -> dict[str, float]:
        return {key: value(name, **labels) for key, (name, labels) in names.items()}

    def delta(key: str) -> float:
        return read()[key] - before[key]

    before = read()
    client = await open_client(f"token={await issue_token(agent)}")
    await client.until("session.started")
    await eventually(lambda: delta("started") == 1)
    assert delta("active") == 1
    loop = asyncio.get_running_loop()
    assert loop_lag.watching(loop)
    for _ in range(3):
        await client.send_audio(silence(100))

    await answered_turn(client, "hello")
    await eventually(lambda: delta("ttfc_count") == 1)
    plain_reply = delta("ttfc_sum")

    await answered_turn(client, 'call slow_tool {"seconds": 0.5}')
    await eventually(lambda: delta("tool_calls") == 1 and delta("ttfc_count") == 2)
    assert 0.45 <= delta("tool_sum") < 1.5
    assert 0.45 <= delta("turn_tool") < 1.5

    # The next connection answers every turn 0.6 s late: the turn's time to first chunk
    # grows by about that, against the undelayed first turn.
    live_emulator.fail_next(reply_delay=0.6)
    live_emulator.emulator.abort_connections()
    assert (await client.until("session.reconnecting"))["reason"] == "connection_lost"
    await client.until("session.resumed")
    await eventually(lambda: delta("reconnects") == 1)
    assert delta("gaps") == 1
    counted = delta("ttfc_sum")
    await answered_turn(client, "again")
    await eventually(lambda: delta("ttfc_count") == 3)
    assert 0.4 < (delta("ttfc_sum") - counted) - plain_reply < 1.2
    assert delta("reply_out") == 3
    assert delta("playback") == 3
    assert delta("turns") == 3
    assert delta("lag_samples") >= 2  # a wake-up every 0.25 s of the session
    assert 0 <= value("voice_event_loop_lag_seconds") < 1.0

    await client.send(type="close")
    await client.until_closed()
    await eventually(lambda: delta("ended") == 1)
    assert delta("active") == 0
    assert not loop_lag.watching(loop)
    assert delta("frames_in") == 3
    assert delta("bytes_in") == len(silence(100)) * 3
    assert delta("frames_out") == len(client.audio)
    assert delta("bytes_out") == sum(len(frame) for frame in client.audio)
    assert delta("tokens_in") > 0
    assert delta("tokens_out") > 0


# --- two processes --------------------------------------------------------------------


@pytest.fixture
def metered_daphnes(live_emulator: Any, tmp_path: Path) -> Iterator[list[tuple[Any, int]]]:
    """Two Daphne processes sharing one multiprocess directory, as on one host."""
    require_postgres()
    env = live_env(
        live_emulator,
        require_redis(),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
        METRICS_TOKEN=TOKEN,
    )
    # Started side by side: most of a start is imports, the test's slowest part.
    with ThreadPoolExecutor(2) as pool:
        started = list(pool.map(lambda n: start_daphne(env, tmp_path / f"daphne-{n}.log"), [0, 1]))
    try:
        yield started
    finally:
        stop_processes([proc for proc, _ in started])
        print((tmp_path / "daphne-0.log").read_text()[-3000:])


def _scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return await asyncio.to_thread(_scrape, port)


async def settled(read: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 5) -> Any:
    """What ``read`` gives once it gives ``expected``, or when ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    while (now := await read()) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return now


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> float:
    return sum(v for (sample, _), v in samples.items() if sample == name)


async def test_metrics_of_two_processes_are_one_picture(
    alice, live_settings, live_emulator, metered_daphnes
):
    (_, port_a), (proc_b, port_b) = metered_daphnes
    agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, response_modality="TEXT"
    )
    figures = ("voice_sessions_active", "voice_sessions_started_total",
               "voice_sessions_ended_total")  # fmt: skip

    async def both() -> list[dict[str, float]]:
        scraped = [await scrape(port_a), await scrape(port_b)]
        return [{name: total(samples, name) for name in figures} for samples in scraped]

    urls = [f"ws://127.0.0.1:{port}/ws/v1/live?token={await issue_token(agent)}"
            for port in (port_a, port_b)]  # fmt: skip
    async with websockets.connect(urls[0]) as ws_a, websockets.connect(urls[1]) as ws_b:
        await until(ws_a, "session.started")
        await until(ws_b, "session.started")
        live = {"voice_sessions_active": 2, "voice_sessions_started_total": 2,
                "voice_sessions_ended_total": 0}  # fmt: skip
        assert await settled(both, [live, live]) == [live, live]
        started = await scrape(port_a)
        key = ("voice_sessions_started_total",
               frozenset({("tenant", alice.tenant.slug), ("resumed", "no")}))  # fmt: skip
        assert started[key] == 2
        await ws_b.send(json.dumps({"type": "close"}))
        await until(ws_b, "session.ended")
        one_left = {"voice_sessions_active": 1, "voice_sessions_started_total": 2,
                    "voice_sessions_ended_total": 1}  # fmt: skip
        assert await settled(both, [one_left, one_left]) == [one_left, one_left]
        # Process B stops: its totals stay in the sums, and it has no live gauge left.
        stop_processes([proc_b])
        after = await scrape(port_a)
        assert total(after, "voice_sessions_started_total") == 2
        assert total(after, "voice_sessions_active") == 1
        assert 0 <= total(after, "voice_event_loop_lag_seconds") < 1.0
        # Tools run on Celery here (REDIS_URL): the tool queue's depth is read at scrape time.
        depth = ("voice_celery_queue_depth", frozenset({("queue", "live_tools")}))
        assert after[depth] >= 0
        await ws_a.send(json.dumps({"type": "close"}))
        await until(ws_a, "session.ended")
