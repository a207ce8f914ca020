"""The tenant dashboard in the admin: its figures are those of the rows each test creates,
Charlie's never show for Alice, and a bad parameter is a clear answer, not a 500."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.utils import timezone

from analytics.models import UsageDaily
from analytics.rollup import rollup_day
from sessions.models import VoiceSession
from sessions.turn_timing import histogram_add
from tests.factories import AgentFactory, MembershipFactory
from tests.helpers import logged_in

pytestmark = pytest.mark.django_db
URL = "/admin/dashboard/"


def session_at(world: Any, agent: Any, at: datetime.datetime, status: str = "ended") -> Any:
    session = VoiceSession.unscoped.create(
        tenant=world.tenant, agent=agent, end_user_id="u", status=status
    )
    # started_at is auto_now_add: set the time the test needs afterwards.
    VoiceSession.unscoped.filter(pk=session.pk).update(started_at=at)
    return session


def histogram(*latencies: float) -> list[int]:
    counts: list[int] = []
    for ms in latencies:
        counts = histogram_add(counts, ms)
    return counts


def usage(world: Any, agent: Any, day: datetime.date, **figures: Any) -> UsageDaily:
    row: UsageDaily = UsageDaily.unscoped.create(
        tenant=world.tenant, agent=agent, agent_ref=agent.pk, day=day, **figures
    )
    return row


def table(html: str, table_id: str) -> str:
    start = html.index(f'id="{table_id}"')
    return html[start : html.index("</table>", start)]


def test_dashboard_hourly_active_and_error_rate_are_the_created_sessions(
    alice, charlie, alice_agent, charlie_agent, alice_staff
):
    now = timezone.now()
    two_hours_ago = now - datetime.timedelta(hours=2)
    for status in ("ended", "ended", "failed"):
        session_at(alice, alice_agent, two_hours_ago, status)
    session_at(alice, alice_agent, now, "active")
    session_at(alice, alice_agent, now - datetime.timedelta(hours=30), "failed")  # too old
    for _ in range(5):  # Charlie's: never counted for Alice
        session_at(charlie, charlie_agent, now, "active")

    response = logged_in(alice_staff).get(URL)

    assert response.status_code == 200
    ctx = response.context
    assert (ctx["active_now"], ctx["sessions_24h"], ctx["failed_24h"]) == (1, 4, 1)
    assert ctx["error_rate_24h"] == 25.0
    hourly = ctx["charts"][0]
    assert hourly.chart_id == "chart-sessions-hourly"
    rows = {row[0]: row[1:] for row in hourly.rows}
    assert len(rows) == 24
    assert rows[two_hours_ago.strftime("%H:00")] == ["3", "1"]
    assert rows[now.strftime("%H:00")] == ["1", "0"]
    assert sum(int(r[0]) for r in rows.values()) == 4
    html = response.text
    assert 'id="figure-active">1<' in html
    assert "25.0 %" in html
    assert '<svg class="vp-chart" id="chart-sessions-hourly"' in html
    assert 'id="chart-sessions-hourly-table"' in html  # the numbers, under the chart


def test_dashboard_days_and_agents_are_the_usage_rows(alice, charlie, alice_staff, charlie_agent):
    today = timezone.now().astimezone(datetime.UTC).date()
    yesterday = today - datetime.timedelta(days=1)
    sales = AgentFactory(tenant=alice.tenant, name="Sales")
    support = AgentFactory(tenant=alice.tenant, name="Support")
    usage(alice, sales, today, sessions=10, sessions_failed=1, turns=40, audio_in_seconds=600,
          audio_out_seconds=300, total_tokens=5000, tool_calls={"succeeded": 4, "failed": 1},
          latency_histogram=histogram(480, 520, 900))  # fmt: skip
    usage(alice, sales, yesterday, sessions=6, sessions_failed=3, turns=12, audio_in_seconds=120,
          total_tokens=700, tool_calls={"succeeded": 2, "timeout": 2},
          latency_histogram=histogram(2600))  # fmt: skip
    usage(alice, support, today, sessions=4, sessions_failed=0, turns=8, audio_out_seconds=60,
          total_tokens=100, latency_histogram=histogram(150))  # fmt: skip
    usage(alice, support, today - datetime.timedelta(days=20), sessions=99)  # not in 7 days
    usage(charlie, charlie_agent, today, sessions=777, total_tokens=123456)

    ctx = logged_in(alice_staff).get(URL).context

    period = ctx["period"]
    assert (period.sessions, period.failed, period.turns) == (20, 4, 60)
    assert period.total_tokens == 5800
    assert period.tool_calls == {"succeeded": 6, "failed": 1, "timeout": 2}
    assert ctx["usage"].tool_statuses == ["succeeded", "failed", "timeout"]
    agents = {row["name"]: row for row in ctx["agent_rows"]}
    assert set(agents) == {"Sales", "Support"}
    assert (agents["Sales"]["sessions"], agents["Sales"]["failed"]) == (16, 4)
    assert agents["Sales"]["error_rate"] == 25.0
    assert agents["Sales"]["minutes_in"] == 12.0
    assert (agents["Sales"]["tool_calls"], agents["Sales"]["tool_calls_failed"]) == (9, 3)
    assert agents["Sales"]["p95"] == 3000.0  # 2600 ms is in the bucket up to 3000
    assert agents["Support"]["p50"] == 150.0
    charts = {chart.chart_id: chart for chart in ctx["charts"]}
    days = {row[0]: row[1:] for row in charts["chart-sessions-daily"].rows}
    assert len(days) == 7
    assert days[today.strftime("%m-%d")] == ["14", "1"]
    assert days[yesterday.strftime("%m-%d")] == ["6", "3"]
    rates = {row[0]: row[1] for row in charts["chart-error-rate"].rows}
    assert rates[yesterday.strftime("%m-%d")] == "50.0"
    latency = {row[0]: row[1:] for row in charts["chart-latency"].rows}
    # Today merges both agents' histograms: 150, 480, 520, 900.
    assert latency[today.strftime("%m-%d")] == ["500", "900"]
    tools = {row[0]: row[1:] for row in charts["chart-tool-calls"].rows}
    assert tools[yesterday.strftime("%m-%d")] == ["2", "0", "2"]
    audio = {row[0]: row[1:] for row in charts["chart-audio"].rows}
    assert audio[today.strftime("%m-%d")] == ["10.0", "6.0"]


def test_dashboard_agent_filter_and_period(alice, alice_staff):
    today = timezone.now().astimezone(datetime.UTC).date()
    sales = AgentFactory(tenant=alice.tenant, name="Sales")
    support = AgentFactory(tenant=alice.tenant, name="Support")
    usage(alice, sales, today, sessions=10)
    usage(alice, support, today, sessions=4)
    usage(alice, support, today - datetime.timedelta(days=20), sessions=99)
    client = logged_in(alice_staff)

    only_support = client.get(URL, {"agent": support.pk, "days": 30})

    assert only_support.status_code == 200
    assert only_support.context["period"].sessions == 103
    assert len(only_support.context["charts"][1].rows) == 30
    # The per-agent table still lists every agent (each leads to its own view).
    assert {r["name"] for r in only_support.context["agent_rows"]} == {"Sales", "Support"}
    assert 'class="vp-selected"' in only_support.text


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"days": "14"}, "days: Select a valid choice. 14 is not one of the available choices."),
        ({"days": "x"}, "days: Select a valid choice."),
        ({"agent": "abc"}, "agent: Enter a whole number."),
        ({"agent": "0"}, "agent: Ensure this value is greater than or equal to 1."),
        ({"agent": "9" * 30}, "agent: Ensure this value is less than or equal to"),
    ],
)
def test_dashboard_bad_parameter_is_a_400_with_the_reason(alice, alice_staff, query, message):
    response = logged_in(alice_staff).get(URL, query)

    assert response.status_code == 400
    assert 'id="dashboard-problems"' in response.text
    assert message in response.text


def test_dashboard_other_tenant_or_agent_is_404_for_staff(
    alice, charlie, alice_staff, alice_agent, charlie_agent
):
    client = logged_in(alice_staff)

    assert client.get(URL, {"tenant": alice.tenant.pk}).status_code == 200
    for tenant in (charlie.tenant.pk, "999999", "abc", "1e3", "-1"):
        assert client.get(URL, {"tenant": tenant}).status_code == 404, tenant
    assert client.get(URL, {"agent": charlie_agent.pk}).status_code == 404
    assert client.get(URL, {"agent": "999999"}).status_code == 404
    assert client.get(URL, {"agent": alice_agent.pk}).status_code == 200


def test_dashboard_charlie_numbers_never_reach_alice(alice, charlie, alice_staff, charlie_agent):
    today = timezone.now().astimezone(datetime.UTC).date()
    usage(charlie, charlie_agent, today, sessions=777, total_tokens=123456)
    session_at(charlie, charlie_agent, timezone.now(), "active")
    charlie_staff = MembershipFactory(tenant=charlie.tenant, user__username="charlie-admin").user

    mine = logged_in(alice_staff).get(URL)
    theirs = logged_in(charlie_staff).get(URL)

    assert (mine.context["period"].sessions, mine.context["active_now"]) == (0, 0)
    assert "777" not in mine.text
    assert "123,456" not in mine.text
    assert "Charlie agent" not in mine.text
    assert (theirs.context["period"].sessions, theirs.context["active_now"]) == (777, 1)
    assert "123,456" in theirs.text


def test_dashboard_superuser_picks_a_tenant(alice, charlie, superuser, charlie_agent):
    usage(charlie, charlie_agent, timezone.now().astimezone(datetime.UTC).date(), sessions=7)
    client = logged_in(superuser)

    picker = client.get(URL)
    chosen = client.get(URL, {"tenant": charlie.tenant.pk})

    assert picker.status_code == 200
    assert f'href="?tenant={charlie.tenant.pk}"' in picker.text
    assert chosen.context["tenant"] == charlie.tenant
    assert chosen.context["period"].sessions == 7
    assert f"?tenant={charlie.tenant.pk}&amp;agent={charlie_agent.pk}" in chosen.text
    assert client.get(URL, {"tenant": "999999"}).status_code == 404
    assert client.get(URL, {"tenant": "x"}).status_code == 404


def test_dashboard_needs_admin_login_and_is_in_the_nav(alice, alice_viewer):
    from django.test import Client

    assert Client().get(URL).status_code == 302  # to the admin login
    index = logged_in(alice_viewer).get("/admin/")
    assert f'href="{URL}"' in index.text
    assert logged_in(alice_viewer).get(URL).status_code == 200


def test_dashboard_queries_do_not_grow_with_sessions(
    alice, alice_staff, alice_agent, django_assert_max_num_queries
):
    now = timezone.now()
    for minutes in range(0, 600, 20):
        session_at(alice, alice_agent, now - datetime.timedelta(minutes=minutes), "ended")
    rollup_day(tenant_id=alice.tenant.pk, day=now.astimezone(datetime.UTC).date())
    client = logged_in(alice_staff)

    with django_assert_max_num_queries(12):
        response = client.get(URL)

    assert response.context["sessions_24h"] == 30
    assert response.context["usage"].days[-1].totals.sessions == sum(
        1 for m in range(0, 600, 20) if (now - datetime.timedelta(minutes=m)).date() == now.date()
    )
