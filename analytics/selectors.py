"""Reads of usage analytics: the rolled-up ``UsageDaily`` rows, never the sessions.

Callers are inside the tenant's scope. The rows are as fresh as the last rollup (at most
``USAGE_ROLLUP_INTERVAL`` seconds old for today and yesterday; docs/analytics.md).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from django.db.models import QuerySet

from analytics.models import UsageDaily
from analytics.rollup import SUMMED_FIELDS, tool_calls_merge
from sessions.turn_timing import histogram_merge, histogram_percentile
from voice_platform.tenancy.models import Tenant


def usage_daily_list(
    *,
    tenant: Tenant,
    date_from: datetime.date,
    date_to: datetime.date,
    agent_id: int | None = None,
) -> QuerySet[UsageDaily]:
    """Rows per agent and day from ``date_from`` to ``date_to`` (inclusive), newest first.

    ``agent_id`` matches the agent's id as rolled up, so a deleted agent's rows are still
    found by it; another tenant's agent id matches nothing, like an unknown one.
    """
    qs = UsageDaily.objects.filter(tenant=tenant, day__gte=date_from, day__lte=date_to)
    if agent_id is not None:
        qs = qs.filter(agent_ref=agent_id)
    return qs.select_related("agent").order_by("-day", "agent_ref")


@dataclass
class UsageDay:
    """One day's usage across the agents of a tenant."""

    day: datetime.date
    agents: int = 0
    sessions: int = 0
    sessions_failed: int = 0
    turns: int = 0
    audio_in_seconds: float = 0.0
    audio_out_seconds: float = 0.0
    prompt_tokens: int = 0
    response_tokens: int = 0
    total_tokens: int = 0
    errors: int = 0
    tool_calls: dict[str, int] = field(default_factory=dict)
    latency_histogram: list[int] = field(default_factory=list)
    reply_p50_ms: float | None = None
    reply_p95_ms: float | None = None


def usage_summary_list(
    *,
    tenant: Tenant,
    date_from: datetime.date,
    date_to: datetime.date,
    agent_id: int | None = None,
) -> list[UsageDay]:
    """Totals per day (days with usage only), newest first; percentiles from the merged
    histograms, not averages of the agents' percentiles."""
    rows = usage_daily_list(
        tenant=tenant, date_from=date_from, date_to=date_to, agent_id=agent_id
    ).select_related(None)
    by_day: dict[datetime.date, list[UsageDaily]] = {}
    for row in rows.iterator(chunk_size=2000):
        by_day.setdefault(row.day, []).append(row)
    days = []
    for day, day_rows in by_day.items():  # the query's order: newest first
        total = UsageDay(day=day, agents=len(day_rows))
        for name in SUMMED_FIELDS:
            setattr(total, name, sum(getattr(r, name) for r in day_rows))
        total.tool_calls = tool_calls_merge([r.tool_calls for r in day_rows])
        total.latency_histogram = histogram_merge([r.latency_histogram for r in day_rows])
        total.reply_p50_ms = histogram_percentile(total.latency_histogram, 50)
        total.reply_p95_ms = histogram_percentile(total.latency_histogram, 95)
        days.append(total)
    return days
