"""The tenant dashboard in the admin (docs/dashboard.md).

Served by ``PlatformAdminSite`` behind its door (``admin_view``: signed-in staff, the tenant
scope entered). Tenant staff see their own tenant; a superuser picks one with
``?tenant=<id>``. Another tenant's or a missing tenant or agent answers 404, like every
object outside the user's tenant; a malformed ``days`` or ``agent`` answers 400 with the
reason on the page. The numbers come from ``analytics.dashboard_data``; this module only
turns them into charts.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

from django import forms
from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from analytics import dashboard_data as data
from analytics.svg_charts import (
    BLUE,
    GREEN,
    GREY,
    ORANGE,
    PALETTE,
    RED,
    Chart,
    Series,
    bar_chart,
    line_chart,
)
from voice_platform.tenancy.admin_site import admin_membership
from voice_platform.tenancy.models import Tenant

# Ids are bigint columns: a larger number would be an error in the database, not a miss.
MAX_ID = 2**63 - 1
STATUS_COLORS = {"succeeded": GREEN, "failed": RED, "timeout": ORANGE, "rejected": GREY}


class DashboardFilterForm(forms.Form):
    """The query parameters besides ``tenant`` (which is an access question: 404, not 400)."""

    agent = forms.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    days = forms.TypedChoiceField(
        choices=[(str(n), f"last {n} days") for n in data.DAY_CHOICES],
        coerce=int,
        required=False,
        empty_value=data.DAY_CHOICES[0],  # type: ignore[arg-type]  # the stubs want a str
    )


@require_GET
def dashboard_view(request: HttpRequest) -> HttpResponse:
    context = admin.site.each_context(request)
    context["title"] = "Dashboard"
    tenant = _tenant(request)
    if tenant is None:  # a superuser without ?tenant: choose one
        context["tenants"] = list(Tenant.objects.order_by("name", "pk"))
        return render(request, "analytics/dashboard_tenants.html", context)
    context["tenant"] = tenant
    context["show_tenant"] = request.user.is_superuser
    form = DashboardFilterForm(request.GET)
    context["form"] = form
    if not form.is_valid():
        context["problems"] = [
            f"{name}: {' '.join(str(e) for e in errs)}" for name, errs in form.errors.items()
        ]
        return render(request, "analytics/dashboard.html", context, status=400)
    agent_id: int | None = form.cleaned_data["agent"]
    days: int = form.cleaned_data["days"]
    agent = None
    if agent_id is not None:
        agent = data.dashboard_agent_get(tenant=tenant, agent_id=agent_id)
        if agent is None:
            raise Http404("Not found.")
    now = timezone.now()
    hourly = data.dashboard_sessions_per_hour(tenant=tenant, now=now, agent_id=agent_id)
    usage = data.dashboard_usage(
        tenant=tenant, today=now.astimezone(datetime.UTC).date(), days=days, agent_id=agent_id
    )
    sessions_24h = sum(h.sessions for h in hourly)
    failed_24h = sum(h.failed for h in hourly)
    context.update(
        agent=agent,
        agents=data.dashboard_agents(tenant=tenant),
        days=days,
        day_choices=data.DAY_CHOICES,
        base_query=f"tenant={tenant.pk}&" if request.user.is_superuser else "",
        active_now=data.dashboard_active_sessions(tenant=tenant, agent_id=agent_id),
        sessions_24h=sessions_24h,
        failed_24h=failed_24h,
        error_rate_24h=data.rate(failed_24h, sessions_24h),
        usage=usage,
        period=usage.period,
        period_p50=usage.period.reply_percentile(50),
        period_p95=usage.period.reply_percentile(95),
        agent_rows=[_agent_row(a) for a in usage.agents],
        charts=[_hourly_chart(hourly), *_daily_charts(usage)],
    )
    return render(request, "analytics/dashboard.html", context)


def _tenant(request: HttpRequest) -> Tenant | None:
    raw = request.GET.get("tenant")
    if request.user.is_superuser:
        if raw is None or raw == "":
            return None
        tenant_id = _id(raw)
        tenant = Tenant.objects.filter(pk=tenant_id).first() if tenant_id else None
        if tenant is None:
            raise Http404("Not found.")
        return tenant
    membership = admin_membership(request)
    if membership is None:  # pragma: no cover - the admin door lets only members in
        raise Http404("Not found.")
    # Naming any tenant but one's own answers like a missing one: nothing tells them apart.
    if raw not in (None, "", str(membership.tenant_id)):
        raise Http404("Not found.")
    return membership.tenant


def _id(raw: str) -> int | None:
    if not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if 0 < value <= MAX_ID else None


def _agent_row(usage: data.AgentUsage) -> dict[str, object]:
    t = usage.totals
    return {
        "agent_ref": usage.agent_ref,
        "name": usage.name,
        "sessions": t.sessions,
        "failed": t.failed,
        "error_rate": t.error_rate,
        "turns": t.turns,
        "minutes_in": t.audio_in_seconds / 60,
        "minutes_out": t.audio_out_seconds / 60,
        "tokens": t.total_tokens,
        "tool_calls": t.tool_calls_total,
        "tool_calls_failed": t.tool_calls_failed,
        "p50": t.reply_percentile(50),
        "p95": t.reply_percentile(95),
    }


def _hourly_chart(hourly: list[data.HourCount]) -> Chart:
    return bar_chart(
        chart_id="chart-sessions-hourly",
        title="Sessions per hour, last 24 hours",
        description="Sessions started in each hour (UTC) and how many of them failed.",
        labels=[h.hour.strftime("%H:00") for h in hourly],
        series=[
            Series("sessions", [h.sessions for h in hourly], BLUE),
            Series("failed", [h.failed for h in hourly], RED),
        ],
        x_label="hour (UTC)",
        y_label="sessions",
    )


def _daily_charts(usage: data.Usage) -> list[Chart]:
    labels = [d.day.strftime("%m-%d") for d in usage.days]
    days = [d.totals for d in usage.days]
    tool_colors = iter(PALETTE[4:] * 3)
    return [
        bar_chart(
            chart_id="chart-sessions-daily",
            title="Sessions per day",
            description="Sessions started each day (UTC) and how many of them failed.",
            labels=labels,
            series=[
                Series("sessions", [t.sessions for t in days], BLUE),
                Series("failed", [t.failed for t in days], RED),
            ],
            x_label="day (UTC)",
            y_label="sessions",
        ),
        line_chart(
            chart_id="chart-error-rate",
            title="Error rate per day",
            description="Failed sessions as a share of the sessions started that day, in per "
            "cent. Days without sessions have no value.",
            labels=labels,
            series=[Series("failed sessions %", [t.error_rate for t in days], RED)],
            x_label="day (UTC)",
            y_label="per cent",
            digits=1,
        ),
        line_chart(
            chart_id="chart-latency",
            title="Reply latency per day (p50 / p95)",
            description="From the end of the user's speech to the reply playing on the "
            "client (voice-to-voice) where the client reports playback, else to the reply's "
            "first audio being sent to it; percentiles of a histogram, exact to its bucket.",
            labels=labels,
            series=[
                Series("p50", [t.reply_percentile(50) for t in days], BLUE),
                Series("p95", [t.reply_percentile(95) for t in days], ORANGE),
            ],
            x_label="day (UTC)",
            y_label="milliseconds",
        ),
        bar_chart(
            chart_id="chart-tool-calls",
            title="Tool calls by status per day",
            description="Tool calls of each day's sessions, stacked by how they ended.",
            labels=labels,
            series=[
                Series(s, [t.tool_calls.get(s, 0) for t in days], _status_color(s, tool_colors))
                for s in usage.tool_statuses
            ]
            or [Series("tool calls", [0 for _ in days], GREEN)],
            x_label="day (UTC)",
            y_label="tool calls",
            stacked=True,
        ),
        bar_chart(
            chart_id="chart-audio",
            title="Minutes of audio per day",
            description="Audio from the users (in) and from the agent (out), in minutes.",
            labels=labels,
            series=[
                Series("in (users)", [t.audio_in_seconds / 60 for t in days], BLUE),
                Series("out (agent)", [t.audio_out_seconds / 60 for t in days], GREEN),
            ],
            x_label="day (UTC)",
            y_label="minutes",
            digits=1,
        ),
        bar_chart(
            chart_id="chart-tokens",
            title="Tokens per day",
            description="Tokens the model counted for each day's sessions (prompt and reply).",
            labels=labels,
            series=[Series("tokens", [t.total_tokens for t in days], PALETTE[4])],
            x_label="day (UTC)",
            y_label="tokens",
        ),
    ]


def _status_color(status: str, others: Iterator[str]) -> str:
    return STATUS_COLORS.get(status) or next(others)


def dashboard_url(*, tenant_id: int | None = None) -> str:
    """The dashboard's URL (for a superuser, of one tenant)."""
    url = reverse("admin:dashboard")
    return f"{url}?tenant={tenant_id}" if tenant_id is not None else url
