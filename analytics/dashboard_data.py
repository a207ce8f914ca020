"""Reads of the tenant dashboard (docs/dashboard.md): the last 24 hours, and days from the rollup.

Every read is explicit about its tenant (the scoped managers filter too) and bounded by what
the page shows, never by how many sessions a tenant has: the hourly chart is one grouped
query over the (tenant, started_at) index, "active now" a count over (tenant, status), and
everything per day or per agent comes from ``UsageDaily`` rows (at most days x agents).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q
from django.db.models.functions import TruncHour

from agents.models import Agent
from analytics.models import UsageDaily
from sessions.models import VoiceSession
from sessions.turn_timing import histogram_merge, histogram_percentile
from voice_platform.tenancy.models import Tenant

DAY_CHOICES = (7, 30)
HOURS = 24
# Tool call statuses in the order the charts and tables list them; any other comes after.
TOOL_STATUSES = ("succeeded", "failed", "timeout", "rejected", "cancelled", "queued", "running")


def rate(part: int, whole: int) -> float | None:
    """``part`` of ``whole`` in per cent; None when there is nothing to divide."""
    return 100.0 * part / whole if whole else None


@dataclass(frozen=True)
class HourCount:
    hour: datetime.datetime  # the hour's start, UTC
    sessions: int
    failed: int


@dataclass
class UsageTotals:
    """Sums of UsageDaily rows: one day, one agent, or a whole period."""

    sessions: int = 0
    failed: int = 0
    errors: int = 0
    turns: int = 0
    audio_in_seconds: float = 0.0
    audio_out_seconds: float = 0.0
    total_tokens: int = 0
    tool_calls: dict[str, int] = field(default_factory=dict)
    histograms: list[list[int]] = field(default_factory=list)

    def add(self, row: dict[str, Any]) -> None:
        self.sessions += row["sessions"]
        self.failed += row["sessions_failed"]
        self.errors += row["errors"]
        self.turns += row["turns"]
        self.audio_in_seconds += row["audio_in_seconds"]
        self.audio_out_seconds += row["audio_out_seconds"]
        self.total_tokens += row["total_tokens"]
        for status, count in (row["tool_calls"] or {}).items():
            self.tool_calls[status] = self.tool_calls.get(status, 0) + int(count)
        if row["latency_histogram"]:
            self.histograms.append(row["latency_histogram"])

    @property
    def error_rate(self) -> float | None:
        return rate(self.failed, self.sessions)

    @property
    def tool_calls_total(self) -> int:
        return sum(self.tool_calls.values())

    @property
    def tool_calls_failed(self) -> int:
        return sum(n for status, n in self.tool_calls.items() if status != "succeeded")

    @property
    def latency_turns(self) -> int:
        return sum(sum(h) for h in self.histograms)

    def reply_percentile(self, pct: float) -> float | None:
        """Of the merged histogram: the upper bound of the bucket holding the percentile."""
        return histogram_percentile(histogram_merge(self.histograms), pct)


@dataclass(frozen=True)
class DayUsage:
    day: datetime.date
    totals: UsageTotals


@dataclass(frozen=True)
class AgentUsage:
    agent_ref: int
    name: str
    totals: UsageTotals


@dataclass(frozen=True)
class Usage:
    days: list[DayUsage]  # every day of the period, oldest first (zeros without a row)
    agents: list[AgentUsage]  # every agent with usage in the period, busiest first
    period: UsageTotals
    tool_statuses: list[str]
    rolled_up_at: datetime.datetime | None  # the newest row's update: how fresh days are


def dashboard_agents(*, tenant: Tenant) -> list[Agent]:
    """The tenant's agents, for the agent filter."""
    return list(Agent.objects.filter(tenant=tenant).order_by("name", "pk"))


def dashboard_agent_get(*, tenant: Tenant, agent_id: int) -> Agent | None:
    """The tenant's agent ``agent_id``; None for a missing or another tenant's one."""
    return Agent.objects.filter(tenant=tenant, pk=agent_id).first()


def dashboard_active_sessions(*, tenant: Tenant, agent_id: int | None = None) -> int:
    """Sessions live now: connecting, active or reconnecting (the (tenant, status) index)."""
    qs = VoiceSession.objects.filter(tenant=tenant, status__in=VoiceSession.LIVE_STATUSES)
    if agent_id is not None:
        qs = qs.filter(agent_id=agent_id)
    return qs.count()


def dashboard_sessions_per_hour(
    *, tenant: Tenant, now: datetime.datetime, agent_id: int | None = None
) -> list[HourCount]:
    """Sessions started in each of the last 24 hours (UTC), the current one included, and
    how many of them failed: one grouped query; hours without sessions count zero."""
    first = now.astimezone(datetime.UTC).replace(minute=0, second=0, microsecond=0)
    first -= datetime.timedelta(hours=HOURS - 1)
    qs = VoiceSession.objects.filter(tenant=tenant, started_at__gte=first, started_at__lte=now)
    if agent_id is not None:
        qs = qs.filter(agent_id=agent_id)
    grouped = (
        qs.annotate(hour=TruncHour("started_at", tzinfo=datetime.UTC))
        .values("hour")
        .annotate(sessions=Count("pk"), failed=Count("pk", filter=Q(status="failed")))
        .order_by("hour")
    )
    found = {row["hour"]: row for row in grouped}
    hours = [first + datetime.timedelta(hours=n) for n in range(HOURS)]
    return [
        HourCount(
            hour=hour,
            sessions=found[hour]["sessions"] if hour in found else 0,
            failed=found[hour]["failed"] if hour in found else 0,
        )
        for hour in hours
    ]


def dashboard_usage(
    *, tenant: Tenant, today: datetime.date, days: int, agent_id: int | None = None
) -> Usage:
    """The rollup's rows of the last ``days`` days (today included): per day, per agent and
    for the whole period. With ``agent_id``, days and period are that agent's only; the
    per-agent list always holds every agent, so the table can lead to each one."""
    first = today - datetime.timedelta(days=days - 1)
    rows = list(
        UsageDaily.objects.filter(tenant=tenant, day__gte=first, day__lte=today)
        .values(
            "day",
            "agent_ref",
            "sessions",
            "sessions_failed",
            "errors",
            "turns",
            "audio_in_seconds",
            "audio_out_seconds",
            "total_tokens",
            "tool_calls",
            "latency_histogram",
            "updated_at",
        )
        .order_by("day", "agent_ref")
    )
    per_day = {first + datetime.timedelta(days=n): UsageTotals() for n in range(days)}
    per_agent: dict[int, UsageTotals] = {}
    period = UsageTotals()
    for row in rows:  # at most days x agents rows, whatever the number of sessions
        per_agent.setdefault(row["agent_ref"], UsageTotals()).add(row)
        if agent_id is None or row["agent_ref"] == agent_id:
            per_day[row["day"]].add(row)
            period.add(row)
    names = _agent_names(tenant=tenant, refs=per_agent)
    agents = [
        AgentUsage(agent_ref=ref, name=names[ref], totals=totals)
        for ref, totals in sorted(per_agent.items(), key=lambda item: (-item[1].sessions, item[0]))
    ]
    statuses = _ordered_statuses(s for t in per_agent.values() for s in t.tool_calls)
    return Usage(
        days=[DayUsage(day=day, totals=totals) for day, totals in per_day.items()],
        agents=agents,
        period=period,
        tool_statuses=statuses,
        rolled_up_at=max((row["updated_at"] for row in rows), default=None),
    )


def _agent_names(*, tenant: Tenant, refs: Iterable[int]) -> dict[int, str]:
    wanted = [ref for ref in refs if ref]
    known = dict(Agent.objects.filter(tenant=tenant, pk__in=wanted).values_list("pk", "name"))
    names = {ref: known.get(ref, f"deleted agent #{ref}") for ref in wanted}
    names[0] = "no agent"
    return names


def _ordered_statuses(statuses: Iterable[str]) -> list[str]:
    seen = set(statuses)
    known = [s for s in TOOL_STATUSES if s in seen]
    return known + sorted(seen - set(TOOL_STATUSES))
