"""The tenant dashboard with 100,000 sessions in the database: how long its page takes.

    .venv/bin/python -m bench.dashboard_bench --sessions 100000 --requests 30

Seeds one tenant (5 agents) with ``--sessions`` ended sessions spread over 30 days (more
in the day than at night, ~3 % failed, each with a latency histogram of 2-14 turns, tokens
and audio counters), ~30 % of them with a tool call, and 20 live ones; a second tenant
gets a tenth as many (rows the dashboard must skip). Then the usage rollup
(``analytics.rollup.rollup_day``) of every day, and the dashboard is requested through
Django's test client, signed in as the tenant's staff user, DEBUG off: the first request of
the process, requests on a new database connection each, and warm ones. Runs on its own
PostgreSQL database (``--database-url``, created and migrated if needed); the seed is kept
and reused unless ``--reseed``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import statistics
import time
import uuid
from typing import Any

DB_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/voice_platform_dashboard_bench"
)
TARGET_MS = 500.0
DAYS = 30
BATCH = 5000


def setup_django(url: str) -> None:
    from bench.bridge_setup import ensure_database

    ensure_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ.pop("REDIS_URL", None)  # the page needs no Redis; the bench measures the DB
    os.environ["DJANGO_SETTINGS_MODULE"] = "voice_platform.settings.local"
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.DEBUG = False  # no query log: as in production
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    call_command("migrate", verbosity=0)


def seed(sessions: int, reseed: bool) -> tuple[Any, Any]:
    """The bench tenant and its staff user (seeded unless already there)."""
    from django.contrib.auth import get_user_model

    from tests.factories import AgentFactory, MembershipFactory, TenantFactory
    from voice_platform.tenancy.models import Tenant
    from voice_platform.tenancy.scope import all_tenants

    tenant = Tenant.objects.filter(slug="dashboard-bench").first()
    if tenant is not None and not reseed:
        return tenant, get_user_model().objects.get(username="dashboard-bench-admin")
    with all_tenants():  # maintenance: the cascade reads every tenant-owned table
        Tenant.objects.filter(slug__in=["dashboard-bench", "dashboard-bench-other"]).delete()
        get_user_model().objects.filter(username="dashboard-bench-admin").delete()
    created: Any = TenantFactory(slug="dashboard-bench", name="Bench Inc")
    tenant = created
    other = TenantFactory(slug="dashboard-bench-other", name="Other Ltd")
    user = MembershipFactory(tenant=tenant, user__username="dashboard-bench-admin").user
    agents = [AgentFactory(tenant=tenant, name=f"Agent {n}") for n in range(5)]
    started = time.monotonic()
    _seed_sessions(tenant, agents, sessions, random.Random(1))
    _seed_sessions(other, [AgentFactory(tenant=other)], sessions // 10, random.Random(2))
    print(f"seeded {sessions + sessions // 10} sessions in {time.monotonic() - started:.0f} s")
    return tenant, user


def _seed_sessions(tenant: Any, agents: list[Any], count: int, rng: random.Random) -> None:
    from django.utils import timezone

    from sessions.models import VoiceSession
    from sessions.turn_timing import histogram_add
    from tools.models import ToolCallRecord

    now = timezone.now()
    started_field = VoiceSession._meta.get_field("started_at")
    created_field = ToolCallRecord._meta.get_field("created_at")
    # bulk_create would stamp "now" into these auto_now_add fields: backdate instead.
    started_field.auto_now_add = False  # type: ignore[attr-defined]
    created_field.auto_now_add = False  # type: ignore[attr-defined]
    try:
        for first in range(0, count, BATCH):
            rows, calls = [], []
            for n in range(first, min(count, first + BATCH)):
                live = n < 20
                at = now - datetime.timedelta(seconds=rng.uniform(0, 120) if live else _when(rng))
                turns = rng.randint(2, 14)
                histogram: list[int] = []
                for _ in range(turns):
                    histogram = histogram_add(histogram, rng.lognormvariate(6.4, 0.45))
                seconds = rng.uniform(20, 600)
                row = VoiceSession(
                    id=uuid.uuid4(), tenant=tenant, agent=agents[n % len(agents)],
                    end_user_id=f"user-{n % 5000}", started_at=at,
                    status="active" if live else ("failed" if rng.random() < 0.03 else "ended"),
                    ended_at=None if live else at + datetime.timedelta(seconds=seconds),
                    turns=turns, client_bytes_in=int(seconds * 0.5 * 32000),
                    model_bytes_out=int(seconds * 0.4 * 48000), total_tokens=turns * 900,
                    prompt_tokens=turns * 700, response_tokens=turns * 200,
                    latency_histogram=histogram,
                )  # fmt: skip
                rows.append(row)
                if rng.random() < 0.3:
                    status = rng.choices(["succeeded", "failed", "timeout"], [0.92, 0.05, 0.03])
                    calls.append(
                        ToolCallRecord(
                            tenant=tenant,
                            agent=row.agent,
                            session=row,
                            session_ref=row.id,
                            call_id=f"c{n}",
                            tool_name="get_current_time",
                            status=status[0],
                            created_at=at,
                            duration_ms=rng.randint(20, 900),
                        )
                    )
            VoiceSession.unscoped.bulk_create(rows)
            ToolCallRecord.unscoped.bulk_create(calls)
    finally:
        started_field.auto_now_add = True  # type: ignore[attr-defined]
        created_field.auto_now_add = True  # type: ignore[attr-defined]


def _when(rng: random.Random) -> float:
    """Seconds ago, over DAYS days; calls cluster in the (UTC) working day."""
    day = rng.randrange(DAYS)
    hour = min(23.99, max(0.0, rng.gauss(14, 4)))
    return day * 86400 + hour * 3600


def rollup(tenant: Any) -> float:
    from django.utils import timezone

    from analytics.rollup import rollup_day

    today = timezone.now().date()
    started = time.monotonic()
    for back in range(DAYS + 1):
        rollup_day(tenant_id=tenant.pk, day=today - datetime.timedelta(days=back))
    return time.monotonic() - started


def timed(client: Any, url: str, *, new_connection: bool) -> float:
    from django.db import connections

    if new_connection:
        connections.close_all()
    started = time.perf_counter()
    response = client.get(url)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, (url, response.status_code)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=DB_URL)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--reseed", action="store_true")
    args = parser.parse_args()
    setup_django(args.database_url)
    from django.test import Client

    from agents.models import Agent
    from sessions.models import VoiceSession

    tenant, user = seed(args.sessions, args.reseed)
    total = VoiceSession.unscoped.count()
    mine = VoiceSession.unscoped.filter(tenant=tenant).count()
    rollup_s = rollup(tenant)
    client = Client()
    client.force_login(user)
    agent = Agent.unscoped.filter(tenant=tenant).order_by("pk").first()
    assert agent is not None
    pages = {
        "7 days, all agents": "/admin/dashboard/",
        "30 days, all agents": "/admin/dashboard/?days=30",
        "30 days, one agent": f"/admin/dashboard/?days=30&agent={agent.pk}",
    }
    first = timed(client, pages["7 days, all agents"], new_connection=True)
    print(f"\n{mine:,} sessions of the tenant, {total:,} in the database; rollup of "
          f"{DAYS + 1} days: {rollup_s:.1f} s; load average {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")  # fmt: skip
    print(f"first request of the process (templates compiled, new connection): {first:.0f} ms\n")
    print("| Page | Cold (new DB connection) median / max ms | Warm median / max ms | Target |")
    print("|---|---|---|---|")
    for name, url in pages.items():
        cold = [timed(client, url, new_connection=True) for _ in range(args.requests)]
        warm = [timed(client, url, new_connection=False) for _ in range(args.requests)]
        print(
            f"| {name} | {statistics.median(cold):.0f} / {max(cold):.0f} | "
            f"{statistics.median(warm):.0f} / {max(warm):.0f} | < {TARGET_MS:.0f} |"
        )
    print(f"\n{args.requests} requests each; load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
