"""Usage rollup: a tenant's day of sessions summed into ``UsageDaily`` rows, one per agent.

``rollup_day`` recomputes a (tenant, day) whole from the sessions that started that UTC day
and the tool calls of those sessions, so running it twice, or in several processes at once,
gives the same rows: each run holds a lock on the tenant's row while it reads and writes,
and rows are upserted on their unique (tenant, day, agent_ref). ``rollup_recent`` is the
periodic job (every ``USAGE_ROLLUP_INTERVAL`` seconds in every server process): today and
yesterday, the days whose sessions may still be changing. docs/analytics.md says what each
figure counts.
"""

from __future__ import annotations

import datetime
import logging
from collections import defaultdict

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from analytics.models import UsageDaily
from sessions.models import VoiceSession
from sessions.turn_timing import histogram_merge, histogram_percentile
from tools.models import ToolCallRecord
from voice_platform.tenancy.models import Tenant
from voice_platform.tenancy.scope import tenant_scope

log = logging.getLogger(__name__)

# The byte counters are raw PCM16 mono: 16 kHz from the client, 24 kHz from the model.
AUDIO_IN_BYTES_PER_SECOND = 16_000 * 2
AUDIO_OUT_BYTES_PER_SECOND = 24_000 * 2
# ``agent_ref`` of sessions whose agent was deleted before they were rolled up.
NO_AGENT = 0
# The figures that add up across sessions, agents and days (tool calls and the latency
# histogram add up too, key by key and bucket by bucket).
SUMMED_FIELDS = (
    "sessions",
    "sessions_failed",
    "turns",
    "audio_in_seconds",
    "audio_out_seconds",
    "prompt_tokens",
    "response_tokens",
    "total_tokens",
    "errors",
)
# What the upsert rewrites: every figure (the key columns and the id stay).
_UPSERT_FIELDS = [
    f.name
    for f in UsageDaily._meta.concrete_fields
    if f.name not in {"id", "tenant", "day", "agent_ref"}
]


def day_bounds(day: datetime.date) -> tuple[datetime.datetime, datetime.datetime]:
    """The UTC instants a day starts and ends (end exclusive)."""
    start = datetime.datetime.combine(day, datetime.time.min, tzinfo=datetime.UTC)
    return start, start + datetime.timedelta(days=1)


def tool_calls_merge(counts: list[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = defaultdict(int)
    for item in counts:
        for status, n in item.items():
            merged[status] += n
    return dict(merged)


def usage_percentiles(row: UsageDaily) -> None:
    """Set the row's p50/p95 from its histogram (the upper bound of the bucket, in ms)."""
    row.reply_p50_ms = histogram_percentile(row.latency_histogram, 50)
    row.reply_p95_ms = histogram_percentile(row.latency_histogram, 95)


def _session_rows(
    tenant_id: int, day: datetime.date, sessions: QuerySet[VoiceSession]
) -> dict[int | None, UsageDaily]:
    """One unsaved row per agent id (None: a deleted agent) from the sessions' counters."""
    failed = Q(status=VoiceSession.Status.FAILED)
    totals = (
        sessions.order_by()  # the model's ordering would join the GROUP BY
        .values("agent_id")
        .annotate(
            n_sessions=Count("pk"),
            n_failed=Count("pk", filter=failed),
            sum_turns=Sum("turns"),
            sum_bytes_in=Sum("client_bytes_in"),
            sum_bytes_out=Sum("model_bytes_out"),
            sum_prompt=Sum("prompt_tokens"),
            sum_response=Sum("response_tokens"),
            sum_total=Sum("total_tokens"),
            sum_errors=Sum("errors"),
        )
    )
    rows: dict[int | None, UsageDaily] = {}
    for t in totals:
        agent_id = t["agent_id"]
        rows[agent_id] = UsageDaily(
            tenant_id=tenant_id,
            day=day,
            agent_id=agent_id,
            agent_ref=agent_id or NO_AGENT,
            sessions=t["n_sessions"],
            sessions_failed=t["n_failed"],
            turns=t["sum_turns"] or 0,
            audio_in_seconds=(t["sum_bytes_in"] or 0) / AUDIO_IN_BYTES_PER_SECOND,
            audio_out_seconds=(t["sum_bytes_out"] or 0) / AUDIO_OUT_BYTES_PER_SECOND,
            prompt_tokens=t["sum_prompt"] or 0,
            response_tokens=t["sum_response"] or 0,
            total_tokens=t["sum_total"] or 0,
            # A failed session (it ended on an error) plus the errors a session survived.
            errors=t["n_failed"] + (t["sum_errors"] or 0),
            tool_calls={},
            latency_histogram=[],
        )
    # The histograms are JSON lists: merged here, one day of one tenant's sessions at a time.
    histograms: dict[int | None, list[list[int]]] = defaultdict(list)
    # Every session with a timed turn: an interrupted or cut reply has a latency too, though
    # no turn of it completed.
    timed = (
        sessions.exclude(latency_histogram=[])
        .order_by()
        .values_list("agent_id", "latency_histogram")
    )
    for agent_id, histogram in timed.iterator(chunk_size=2000):
        if histogram:
            histograms[agent_id].append(histogram)
    # .get(): an agent deleted between these reads moves its sessions to None; the next run
    # counts them there.
    for agent_id, found in histograms.items():
        if (row := rows.get(agent_id)) is not None:
            row.latency_histogram = histogram_merge(found)
    calls = (
        ToolCallRecord.objects.filter(tenant_id=tenant_id, session__in=sessions)
        .order_by()
        .values("session__agent_id", "status")
        .annotate(n=Count("pk"))
    )
    for c in calls:
        if (row := rows.get(c["session__agent_id"])) is not None:
            row.tool_calls[c["status"]] = row.tool_calls.get(c["status"], 0) + c["n"]
    return rows


def _without_frozen(row: UsageDaily, frozen: list[UsageDaily]) -> UsageDaily:
    """The sessions of deleted agents, less what their own rows (kept) already count.

    A deleted agent's sessions lose their agent (SET_NULL), so a re-run can no longer tell
    them apart: the rows rolled up while the agent existed are kept as they are, and the
    "no agent" row holds only the rest, so the day's total stays exact.
    """
    for name in SUMMED_FIELDS:
        left = getattr(row, name) - sum(getattr(f, name) for f in frozen)
        setattr(row, name, max(left, 0))
    kept_calls = tool_calls_merge([f.tool_calls for f in frozen])
    row.tool_calls = {
        s: n - kept_calls.get(s, 0) for s, n in row.tool_calls.items() if n > kept_calls.get(s, 0)
    }
    if row.latency_histogram:
        kept = histogram_merge([f.latency_histogram for f in frozen])
        pairs = zip(row.latency_histogram, kept, strict=True)  # both full length (merged)
        row.latency_histogram = [max(n - k, 0) for n, k in pairs]
    return row


def _is_empty(row: UsageDaily) -> bool:
    return not (
        any(getattr(row, name) for name in SUMMED_FIELDS)
        or row.tool_calls
        or any(row.latency_histogram)
    )


def rollup_day(*, tenant_id: int, day: datetime.date) -> int:
    """Recompute one tenant's UsageDaily rows of ``day`` (UTC) from its sessions; rows written."""
    start, end = day_bounds(day)
    # The rollup serves one tenant at a time, like a task: it opens that tenant's scope.
    with tenant_scope(tenant_id), transaction.atomic():
        # Runs for one tenant take turns (other processes run the same job): the second
        # waits, then recomputes from what the first committed. NO KEY UPDATE, not UPDATE:
        # inserts of the tenant's sessions and tool calls (FOR KEY SHARE) go on meanwhile.
        if Tenant.objects.select_for_update(no_key=True).filter(pk=tenant_id).first() is None:
            return 0
        sessions = VoiceSession.objects.filter(
            tenant_id=tenant_id, started_at__gte=start, started_at__lt=end
        )
        rows = _session_rows(tenant_id, day, sessions)
        existing = UsageDaily.objects.filter(tenant_id=tenant_id, day=day)
        frozen = [r for r in existing if r.agent_id is None and r.agent_ref != NO_AGENT]
        if None in rows and frozen:
            _without_frozen(rows[None], frozen)
        written = [row for row in rows.values() if not _is_empty(row)]
        for row in written:
            usage_percentiles(row)
        UsageDaily.objects.bulk_create(
            written,
            update_conflicts=True,
            unique_fields=["tenant", "day", "agent_ref"],
            update_fields=_UPSERT_FIELDS,
        )
        # Rows of agents with no session that day any more (recomputed whole), except the
        # kept rows of deleted agents.
        existing.exclude(agent_ref__in=[r.agent_ref for r in written]).exclude(
            pk__in=[f.pk for f in frozen]
        ).delete()
    return len(written)


def rollup_recent() -> None:
    """The periodic job: today and yesterday (UTC) for every tenant with sessions then."""
    today = timezone.now().astimezone(datetime.UTC).date()
    days = (today - datetime.timedelta(days=1), today)
    since, _ = day_bounds(days[0])
    # unscoped: the job serves every tenant; each tenant's rollup opens its own scope. One
    # index probe per tenant (tenant, started_at), not a scan of every session.
    recent = VoiceSession.unscoped.filter(tenant=OuterRef("pk"), started_at__gte=since)
    tenant_ids = list(Tenant.objects.filter(Exists(recent)).values_list("pk", flat=True))
    for tenant_id in tenant_ids:
        for day in days:
            try:
                rollup_day(tenant_id=tenant_id, day=day)
            except Exception:  # one tenant's failure must not starve the others
                log.exception("usage rollup of tenant %s on %s failed", tenant_id, day)
