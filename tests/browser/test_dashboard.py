"""The dashboard and a session's timeline in headless Chromium, with data from a real call.

One call runs through the real consumer, SDK and Live emulator: a spoken turn whose client
reports playback, a turn cut by a dropped upstream connection (a reconnect), and a tool
call. Its stored row and tool calls are then copied, backdated over the last 7 days,
to give the dashboard a week of such calls; the rollup sums the days. Screenshots go to
var/test-artifacts/browser/, and with UPDATE_DOCS_SCREENSHOTS=1 to docs/images/ too.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from analytics.rollup import rollup_day
from sessions.models import VoiceSession
from tests.browser.pages import admin_login, screenshot, tenant_admin
from tests.factories import AgentFactory
from tests.processes import ROOT
from tests.sessions.conftest import (  # noqa: F401  (live_settings: a fixture)
    issue_token,
    live_settings,
    no_leaked_tasks,
    open_client,
    speak,
)
from tools.models import ToolCallRecord
from tools.services import agent_tool_create, tool_sync_registry
from voice_platform.tenancy.scope import tenant_scope

pytestmark = pytest.mark.django_db(transaction=True)
DOCS_IMAGES = ROOT / "docs" / "images"
COPIES = 160  # a week of calls like the real one, for the charts


@pytest.fixture
def live_emulator_settings() -> dict[str, Any]:
    # The emulator's test pace (20x real time), not the browser tests' 1.5x: no page plays
    # this call's audio, and its replies (a tool result read out) would take seconds.
    return {"pace": 20.0}


@pytest.fixture
def dashboard_live(live_settings: Any) -> Any:  # noqa: F811 (the imported fixture)
    # Tools run in threads of this process: the call is real, a worker's start-up is not
    # what this test is about.
    live_settings.TOOL_EXECUTION = "inprocess"
    return live_settings


@database_sync_to_async
def support_agent(tenant: Any) -> Any:
    tool_sync_registry()
    agent = AgentFactory(
        tenant=tenant, name="Support line", response_modality="AUDIO",
        vad_silence_duration_ms=500, input_transcription=True, output_transcription=True,
    )  # fmt: skip
    with tenant_scope(tenant.pk):
        agent_tool_create(tenant=tenant, agent=agent, tool_name="get_current_time")
    return agent


async def real_call(agent: Any, live_emulator: Any) -> str:
    client = await open_client(f"token={await issue_token(agent, user='caller-1')}")
    session_id = str((await client.until("session.started"))["session_id"])
    await speak(client, speech_ms=600, silence_ms=900)  # turn 1: spoken, reply heard
    while not isinstance(await client.recv(), bytes):
        pass
    await asyncio.sleep(0.15)  # the client's jitter buffer, then its speaker starts
    await client.send(type="playback.started")
    await client.until("turn_complete")
    live_emulator.fail_next(reply_delay=1.0)  # turn 2: the upstream drops mid-turn
    await client.send(type="text", text="are you still there")
    await asyncio.sleep(0.3)
    live_emulator.emulator.abort_connections()
    await client.until("session.resumed", timeout=15)
    await client.until("turn_complete", timeout=15)
    await client.send(type="text", text='call get_current_time {"timezone": "Europe/Paris"}')
    await client.until("tool.finished")  # turn 3: a tool call
    await client.until("turn_complete")
    await client.send(type="close")
    await client.until_closed()
    return session_id


@contextlib.contextmanager
def backdated() -> Iterator[None]:
    """Lets bulk_create write started_at / created_at as given (auto_now_add otherwise)."""
    fields = [
        VoiceSession._meta.get_field("started_at"),
        ToolCallRecord._meta.get_field("created_at"),
    ]
    for f in fields:
        f.auto_now_add = False  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for f in fields:
            f.auto_now_add = True  # type: ignore[attr-defined]


@database_sync_to_async
def week_of_copies(session_id: str, tenant: Any, agent: Any) -> None:
    """COPIES backdated copies of the real call (its counters, timings, tool calls), spread
    over 7 days by a seeded RNG, some failed; then the rollup of every day."""
    rng = random.Random(14)
    real = VoiceSession.unscoped.get(pk=session_id)
    calls = list(ToolCallRecord.unscoped.filter(session_id=session_id))
    other = AgentFactory(tenant=tenant, name="Bookings", response_modality="AUDIO")
    now = timezone.now()
    copies, copied_calls = [], []
    for n in range(COPIES):
        at = now - datetime.timedelta(minutes=rng.triangular(2, 7 * 24 * 60, 60))
        copy = VoiceSession(
            tenant=tenant, agent=agent if n % 3 else other, end_user_id=f"caller-{n + 2}",
            status="failed" if rng.random() < 0.06 else "ended", started_at=at,
            ended_at=at + (real.ended_at - real.started_at) if real.ended_at else None,
            turns=real.turns, tool_calls=real.tool_calls, reconnects=real.reconnects,
            client_bytes_in=real.client_bytes_in * rng.randint(8, 40),
            model_bytes_out=real.model_bytes_out * rng.randint(8, 40),
            total_tokens=real.total_tokens * rng.randint(8, 40),
            latency_histogram=real.latency_histogram, turn_timings=real.turn_timings,
        )  # fmt: skip
        copies.append(copy)
        for call in calls:
            status = rng.choices(["succeeded", "failed", "timeout"], [0.9, 0.06, 0.04])[0]
            copied_calls.append(
                ToolCallRecord(
                    tenant=tenant,
                    agent=copy.agent,
                    session=copy,
                    session_ref=copy.pk,
                    call_id=f"{call.call_id}-{n}",
                    tool_name=call.tool_name,
                    status=status,
                    turn=call.turn,
                    created_at=at,
                    duration_ms=call.duration_ms,
                )
            )
    with backdated():
        VoiceSession.unscoped.bulk_create(copies)
        ToolCallRecord.unscoped.bulk_create(copied_calls)
    for days_ago in range(8):
        rollup_day(tenant_id=tenant.pk, day=(now - datetime.timedelta(days=days_ago)).date())


async def shoot(page: Any, artifacts: Path, name: str) -> None:
    path = await screenshot(page, artifacts, name)
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(path, DOCS_IMAGES / f"{name}.png")


async def test_dashboard_and_timeline_of_a_real_call(
    alice, dashboard_live, live_emulator, live_server, launch_browser, artifacts
):
    agent = await support_agent(alice.tenant)
    session_id = await real_call(agent, live_emulator)
    stored = await database_sync_to_async(VoiceSession.unscoped.get)(pk=session_id)
    assert [t["turn"] for t in stored.turn_timings] == [1, 2, 3]
    assert stored.turn_timings[0]["playback_ms"] is not None
    assert len(stored.reconnect_log) == 1
    await week_of_copies(session_id, alice.tenant, agent)
    user = await tenant_admin(alice.tenant)
    browser = await launch_browser(None, "--window-size=1400,1000")
    page = await admin_login(browser, live_server.url, user.username)
    await page.set_viewport_size({"width": 1400, "height": 1000})

    await page.goto(f"{live_server.url}/admin/dashboard/")
    summary = await page.inner_text("#dashboard-summary")
    sessions_24h = await page.inner_text("#figure-sessions-24h")
    assert int(sessions_24h.replace(",", "")) >= 1  # the real call, at least
    assert "active now" in summary
    assert await page.locator("svg.vp-chart").count() == 7
    agents = await page.inner_text("#dashboard-agents")
    assert "Support line" in agents
    assert "Bookings" in agents
    await shoot(page, artifacts, "dashboard")

    await page.goto(f"{live_server.url}/admin/voice_sessions/voicesession/{session_id}/change/")
    turns = await page.inner_text("#timeline-turns")
    assert "get_current_time (succeeded)" in turns
    assert await page.locator("#timeline-turns tbody tr").count() == 3
    assert await page.locator("#timeline-reconnects tbody tr").count() == 1
    await page.locator("#session-timeline-module").screenshot(
        path=str(artifacts / "session-timeline.png")
    )
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(artifacts / "session-timeline.png", DOCS_IMAGES / "session-timeline.png")
