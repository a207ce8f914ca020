"""The usage rollup: UsageDaily rows recomputed from sessions and their tool calls.

Every expected figure is computed here from the rows the test created, never copied.
"""

from __future__ import annotations

import datetime
import math
import threading
from collections import Counter
from typing import Any

import pytest
from django.db import connection

from agents.services import agent_delete
from analytics.models import UsageDaily
from analytics.rollup import (
    AUDIO_IN_BYTES_PER_SECOND,
    AUDIO_OUT_BYTES_PER_SECOND,
    NO_AGENT,
    day_bounds,
    rollup_day,
    rollup_recent,
)
from conftest import require_postgres
from sessions.models import VoiceSession
from sessions.turn_timing import LATENCY_BUCKETS_MS, histogram_add
from tests.factories import AgentFactory, ToolCallRecordFactory
from voice_platform.tenancy.scope import tenant_scope

DAY1 = datetime.date(2026, 3, 1)
DAY2 = DAY1 + datetime.timedelta(days=1)
FIGURES = ("turns", "client_bytes_in", "model_bytes_out", "prompt_tokens", "response_tokens")


def started(day: datetime.date, seconds: float) -> datetime.datetime:
    return day_bounds(day)[0] + datetime.timedelta(seconds=seconds)


def make_session(
    tenant: Any,
    agent: Any,
    at: datetime.datetime,
    *,
    latencies: tuple[float, ...] = (),
    tool_statuses: tuple[str, ...] = (),
    **fields: Any,
) -> VoiceSession:
    histogram: list[int] = []
    for latency in latencies:
        histogram = histogram_add(histogram, latency)
    fields.setdefault("status", VoiceSession.Status.ENDED)
    # unscoped: test data of any tenant, written outside a scope.
    session = VoiceSession.unscoped.create(
        tenant=tenant, agent=agent, end_user_id="u1", latency_histogram=histogram, **fields
    )
    # started_at is auto_now_add: set the start the test needs afterwards.
    VoiceSession.unscoped.filter(pk=session.pk).update(started_at=at)
    session.refresh_from_db()
    # What the expectations are computed from.
    session.latencies = latencies  # type: ignore[attr-defined]
    session.tool_statuses = tool_statuses  # type: ignore[attr-defined]
    for status in tool_statuses:
        ToolCallRecordFactory(
            tenant=tenant, agent=agent, session=session, session_ref=session.pk, status=status
        )
    return session


def bucket_bound(latency_ms: float) -> float:
    """The bucket's upper bound a latency falls in (what a histogram percentile reads)."""
    return float(next((b for b in LATENCY_BUCKETS_MS if latency_ms <= b), LATENCY_BUCKETS_MS[-1]))


def nearest_rank(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def expected_row(sessions: list[VoiceSession]) -> dict[str, Any]:
    tool_calls: Counter[str] = Counter()
    for s in sessions:
        for record_status in s.tool_statuses:  # type: ignore[attr-defined]
            tool_calls[record_status] += 1
    latencies = [x for s in sessions for x in s.latencies]  # type: ignore[attr-defined]
    failed = sum(s.status == VoiceSession.Status.FAILED for s in sessions)
    return {
        "sessions": len(sessions),
        "sessions_failed": failed,
        "turns": sum(s.turns for s in sessions),
        "audio_in_seconds": sum(s.client_bytes_in for s in sessions) / AUDIO_IN_BYTES_PER_SECOND,
        "audio_out_seconds": sum(s.model_bytes_out for s in sessions) / AUDIO_OUT_BYTES_PER_SECOND,
        "prompt_tokens": sum(s.prompt_tokens for s in sessions),
        "response_tokens": sum(s.response_tokens for s in sessions),
        "total_tokens": sum(s.total_tokens for s in sessions),
        "tool_calls": dict(tool_calls),
        "errors": failed + sum(s.errors for s in sessions),
        "reply_p50_ms": bucket_bound(nearest_rank(latencies, 50)) if latencies else None,
        "reply_p95_ms": bucket_bound(nearest_rank(latencies, 95)) if latencies else None,
    }


def stored(tenant_id: int, day: datetime.date) -> dict[int, dict[str, Any]]:
    with tenant_scope(tenant_id):
        rows = UsageDaily.objects.filter(tenant_id=tenant_id, day=day)
        return {
            r.agent_ref: {
                "id": r.pk,
                "agent_id": r.agent_id,
                **{name: getattr(r, name) for name in expected_row([])},
                "latency_histogram": r.latency_histogram,
            }
            for r in rows
        }


def figures_only(rows: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    keys = expected_row([]).keys()
    return {ref: {k: v for k, v in row.items() if k in keys} for ref, row in rows.items()}


def world(alice: Any, charlie: Any) -> dict[str, Any]:
    """Two agents of Alice over two days (edges of the day included), and Charlie's noise."""
    one = AgentFactory(tenant=alice.tenant)
    two = AgentFactory(tenant=alice.tenant)
    t = alice.tenant
    sessions = {
        (one, DAY1): [
            make_session(t, one, started(DAY1, 0), turns=3, client_bytes_in=96_000,
                         model_bytes_out=144_000, prompt_tokens=10, response_tokens=20,
                         total_tokens=30, errors=1, latencies=(120, 480, 950),
                         tool_statuses=("succeeded", "succeeded", "failed")),
            make_session(t, one, started(DAY1, 86_399.9), turns=1, client_bytes_in=16_000,
                         status=VoiceSession.Status.FAILED, total_tokens=7, latencies=(2600,),
                         tool_statuses=("rejected",)),
        ],
        (two, DAY1): [
            make_session(t, two, started(DAY1, 3600), turns=2, model_bytes_out=48_000,
                         latencies=(90, 310), tool_statuses=("timeout",)),
        ],
        (one, DAY2): [
            make_session(t, one, started(DAY2, 0), turns=4, client_bytes_in=64_000,
                         prompt_tokens=5, latencies=(150, 150, 700, 16_000)),
        ],
    }  # fmt: skip
    # Charlie's session on the same day, and Alice's the day after: neither counts.
    make_session(charlie.tenant, AgentFactory(tenant=charlie.tenant), started(DAY1, 60), turns=9)
    make_session(t, one, started(DAY2, 86_400), turns=5)
    return {"one": one, "two": two, "sessions": sessions}


@pytest.mark.django_db
def test_rollup_day_sums_sessions_and_tool_calls_per_agent_and_day(alice, charlie):
    w = world(alice, charlie)
    for day in (DAY1, DAY2):
        expected = {
            agent.pk: expected_row(found)
            for (agent, on), found in w["sessions"].items()
            if on == day
        }
        assert rollup_day(tenant_id=alice.tenant.pk, day=day) == len(expected)
        assert figures_only(stored(alice.tenant.pk, day)) == expected
    assert stored(charlie.tenant.pk, DAY1) == {}  # Alice's rollup never wrote Charlie's rows


@pytest.mark.django_db
def test_rollup_day_twice_gives_the_same_rows(alice, charlie):
    world(alice, charlie)
    first = rollup_day(tenant_id=alice.tenant.pk, day=DAY1)
    before = stored(alice.tenant.pk, DAY1)
    assert rollup_day(tenant_id=alice.tenant.pk, day=DAY1) == first
    assert stored(alice.tenant.pk, DAY1) == before  # same ids and figures, no duplicate


@pytest.mark.django_db
def test_rollup_day_keeps_a_deleted_agents_usage(alice, charlie):
    w = world(alice, charlie)
    one, two = w["one"].pk, w["two"].pk
    late = AgentFactory(tenant=alice.tenant)
    late_session = make_session(alice.tenant, late, started(DAY1, 7200), turns=6, errors=2)
    rollup_day(tenant_id=alice.tenant.pk, day=DAY1)
    before = stored(alice.tenant.pk, DAY1)
    with tenant_scope(alice.tenant.pk):
        agent_delete(agent=w["one"])
        late_pk = late.pk
        agent_delete(agent=late)
    rollup_day(tenant_id=alice.tenant.pk, day=DAY1)
    after = stored(alice.tenant.pk, DAY1)
    # The deleted agents' rows keep their id, agent_ref and figures; only the FK is gone, and
    # their sessions (now without an agent) are not counted a second time under "no agent".
    assert after[one] == {**before[one], "agent_id": None}
    assert after[late_pk] == {**before[late_pk], "agent_id": None}
    assert after[late_pk]["turns"] == late_session.turns
    assert after[two] == before[two]
    assert NO_AGENT not in after
    total_turns = sum(
        s.turns for (_, on), found in w["sessions"].items() if on == DAY1 for s in found
    )
    assert sum(r["turns"] for r in after.values()) == total_turns + late_session.turns


@pytest.mark.django_db
def test_rollup_day_counts_sessions_of_agents_deleted_before_any_rollup_under_no_agent(
    alice, charlie
):
    w = world(alice, charlie)
    deleted_sessions = w["sessions"][(w["two"], DAY1)]
    with tenant_scope(alice.tenant.pk):
        agent_delete(agent=w["two"])
    rollup_day(tenant_id=alice.tenant.pk, day=DAY1)
    rows = stored(alice.tenant.pk, DAY1)
    assert set(rows) == {w["one"].pk, NO_AGENT}
    assert figures_only(rows)[NO_AGENT] == expected_row(deleted_sessions)


@pytest.mark.django_db
def test_rollup_recent_rolls_up_today_and_yesterday_of_active_tenants_only(alice, charlie):
    today = datetime.datetime.now(datetime.UTC).date()
    yesterday = today - datetime.timedelta(days=1)
    older = today - datetime.timedelta(days=2)
    agent = AgentFactory(tenant=alice.tenant)
    for day in (today, yesterday, older):
        make_session(alice.tenant, agent, started(day, 1), turns=1)
    # Charlie's only session is older than yesterday: nothing of his is rolled up.
    make_session(charlie.tenant, AgentFactory(tenant=charlie.tenant), started(older, 1), turns=1)
    rollup_recent()
    with tenant_scope(alice.tenant.pk):
        days = sorted(UsageDaily.objects.values_list("day", flat=True))
    assert days == [yesterday, today]
    with tenant_scope(charlie.tenant.pk):
        assert not UsageDaily.objects.exists()


# Committed rows (threads use their own connections). available_apps: the teardown then
# empties only these apps' tables and skips post_migrate, seconds cheaper than a full flush.
@pytest.mark.django_db(
    transaction=True,
    available_apps=[
        "voice_platform.tenancy", "agents", "tools", "sessions", "playground", "analytics",
    ],
)  # fmt: skip
def test_rollup_day_in_concurrent_processes_writes_each_row_once(alice, charlie):
    require_postgres()
    w = world(alice, charlie)
    expected = {
        agent.pk: expected_row(found) for (agent, on), found in w["sessions"].items() if on == DAY1
    }
    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            rollup_day(tenant_id=alice.tenant.pk, day=DAY1)
        except BaseException as exc:  # reported below: a thread's exception is otherwise lost
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert figures_only(stored(alice.tenant.pk, DAY1)) == expected
