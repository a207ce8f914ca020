"""REST usage analytics: filters, validation, CSV export and tenant isolation.

Rows are written directly (the rollup has its own tests); expected figures are computed
here from the rows created.
"""

from __future__ import annotations

import csv
import datetime
import io
from typing import Any

import pytest

from analytics.models import UsageDaily
from analytics.serializers import TOOL_CALL_STATUSES
from sessions.turn_timing import histogram_add, histogram_merge, histogram_percentile
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db

TODAY = datetime.datetime.now(datetime.UTC).date()
USAGE = "/api/v1/usage/"
SUMMARY = "/api/v1/usage/summary/"
ENDPOINTS = (USAGE, SUMMARY)


def usage_row(world: Any, agent: Any, day: datetime.date, **figures: Any) -> UsageDaily:
    histogram: list[int] = []
    for latency in figures.pop("latencies", ()):
        histogram = histogram_add(histogram, latency)
    row = UsageDaily(
        tenant=world.tenant,
        agent=agent,
        agent_ref=agent.pk if agent is not None else 0,
        day=day,
        latency_histogram=histogram,
        reply_p50_ms=histogram_percentile(histogram, 50),
        reply_p95_ms=histogram_percentile(histogram, 95),
        **figures,
    )
    row.save()  # a plain save never reads through the scoped manager
    return row


def days_ago(n: int) -> datetime.date:
    return TODAY - datetime.timedelta(days=n)


@pytest.fixture
def rows(alice, charlie):  # type: ignore[no-untyped-def]
    one = AgentFactory(tenant=alice.tenant, name="=cmd|calc")  # a formula, for the CSV check
    two = AgentFactory(tenant=alice.tenant)
    theirs = AgentFactory(tenant=charlie.tenant)
    mine = [
        usage_row(alice, one, days_ago(0), sessions=3, sessions_failed=1, turns=7,
                  audio_in_seconds=90.0, audio_out_seconds=150.0, total_tokens=40, errors=2,
                  tool_calls={"succeeded": 2, "failed": 1}, latencies=(120, 480, 950)),
        usage_row(alice, two, days_ago(0), sessions=1, turns=2, audio_in_seconds=30.0,
                  tool_calls={"succeeded": 1}, latencies=(2600,)),
        usage_row(alice, one, days_ago(1), sessions=2, turns=4, total_tokens=9),
        usage_row(alice, one, days_ago(40), sessions=5, turns=5),  # outside the default range
    ]  # fmt: skip
    foreign = usage_row(charlie, theirs, days_ago(0), sessions=50, turns=99)
    return {"one": one, "two": two, "theirs": theirs, "mine": mine, "foreign": foreign}


def ids(body: dict[str, Any]) -> list[int]:
    return [r["id"] for r in body["results"]]


def test_usage_list_default_range_is_the_last_30_days_newest_first(alice, rows):
    body = alice.client.get(USAGE).json()
    expected = sorted(
        (r for r in rows["mine"] if r.day >= days_ago(29)),
        key=lambda r: (-r.day.toordinal(), r.agent_ref),
    )
    assert ids(body) == [r.pk for r in expected]
    first = body["results"][0]
    row = expected[0]
    assert first["agent"] == row.agent_ref
    assert first["agent_name"] == row.agent.name
    assert first["audio_in_minutes"] == round(row.audio_in_seconds / 60, 2)
    assert first["tool_calls"] == {s: row.tool_calls.get(s, 0) for s in TOOL_CALL_STATUSES}
    assert first["reply_p95_ms"] == row.reply_p95_ms


def test_usage_list_filters_by_agent_and_dates(alice, rows):
    one = rows["one"]
    by_agent = alice.client.get(f"{USAGE}?agent={one.pk}&date_from={days_ago(60)}").json()
    assert sorted(ids(by_agent)) == sorted(r.pk for r in rows["mine"] if r.agent_id == one.pk)
    window = alice.client.get(f"{USAGE}?date_from={days_ago(1)}&date_to={days_ago(1)}").json()
    assert ids(window) == [r.pk for r in rows["mine"] if r.day == days_ago(1)]


def test_usage_keeps_a_deleted_agents_rows_findable_by_its_id(alice, rows):
    one = rows["one"]
    agent_id = one.pk
    one.delete()  # SET_NULL on the usage rows: agent_ref stays
    body = alice.client.get(f"{USAGE}?agent={agent_id}").json()
    assert body["count"] == sum(
        1 for r in rows["mine"] if r.agent_ref == agent_id and r.day >= days_ago(29)
    )
    assert {(r["agent"], r["agent_deleted"], r["agent_name"]) for r in body["results"]} == {
        (agent_id, True, "")
    }


def test_usage_summary_totals_each_day_across_agents(alice, rows):
    body = alice.client.get(SUMMARY).json()
    in_range = [r for r in rows["mine"] if r.day >= days_ago(29)]
    days = sorted({r.day for r in in_range}, reverse=True)
    assert [d["day"] for d in body["results"]] == [str(d) for d in days]
    today = body["results"][0]
    of_today = [r for r in in_range if r.day == days[0]]
    assert today["agents"] == len(of_today)
    assert today["sessions"] == sum(r.sessions for r in of_today)
    assert today["errors"] == sum(r.errors for r in of_today)
    assert today["tool_calls"]["succeeded"] == sum(
        r.tool_calls.get("succeeded", 0) for r in of_today
    )
    merged = histogram_merge([r.latency_histogram for r in of_today])
    assert today["latency_histogram"] == merged
    # The percentile of all the day's turns, not an average of the agents' percentiles.
    assert today["reply_p95_ms"] == histogram_percentile(merged, 95)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("date_from=2026-02-30", "date_from"),
        ("date_to=yesterday", "date_to"),
        ("date_from=2026-03-02&date_to=2026-03-01", "date_to"),
        ("date_from=2025-01-01&date_to=2026-01-02", "date_from"),  # 367 days
        ("date_from=1999-12-31", "date_from"),
        ("date_from=", "date_from"),
        ("agent=abc", "agent"),
        ("agent=0", "agent"),
        ("format=xml", "format"),
    ],
)
def test_usage_bad_filters_answer_400_on_the_field(alice, query, field):
    for path in ENDPOINTS:
        response = alice.client.get(f"{path}?{query}")
        assert response.status_code == 400, (path, query, response.content)
        assert response["Content-Type"] == "application/json"
        assert list(response.json()) == [field], response.json()


def test_usage_range_of_exactly_366_days_is_accepted(alice):
    response = alice.client.get(f"{USAGE}?date_from=2025-01-01&date_to=2026-01-01")
    assert response.status_code == 200


def read_csv(response: Any) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_usage_csv_export_by_format_or_accept_header(alice, rows):
    expected = [r for r in rows["mine"] if r.day >= days_ago(29)]
    for response in (
        alice.client.get(f"{USAGE}?format=csv"),
        alice.client.get(USAGE, HTTP_ACCEPT="text/csv"),
    ):
        assert response.status_code == 200
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert response["Content-Disposition"] == (
            f'attachment; filename="usage-{days_ago(29)}-{TODAY}.csv"'
        )
        lines = read_csv(response)
        assert sorted(int(r["id"]) for r in lines) == sorted(r.pk for r in expected)
        row = next(r for r in lines if int(r["id"]) == expected[0].pk)
        assert row["agent_name"] == "'" + rows["one"].name  # never a formula in a spreadsheet
        assert int(row["tool_calls_failed"]) == expected[0].tool_calls["failed"]
        assert row["reply_p50_ms"] == str(expected[0].reply_p50_ms)
        assert "latency_histogram" not in row


def test_usage_csv_is_unpaginated_and_has_a_header_without_rows(alice, rows):
    full = read_csv(alice.client.get(f"{USAGE}?format=csv&page_size=1&date_from={days_ago(60)}"))
    assert len(full) == len(rows["mine"])
    empty = alice.client.get(f"{SUMMARY}?format=csv&date_from=2020-01-01&date_to=2020-01-02")
    assert (
        empty["Content-Disposition"]
        == 'attachment; filename="usage-summary-2020-01-01-2020-01-02.csv"'
    )
    header = empty.content.decode().splitlines()
    assert len(header) == 1
    assert header[0].startswith("day,")


def test_usage_csv_errors_are_json(alice):
    response = alice.client.get(f"{USAGE}?format=csv&date_from=nope")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"


def test_usage_needs_an_api_key(client):
    for path in ENDPOINTS:
        assert client.get(path).status_code == 401
        assert client.get(f"{path}?format=csv").status_code == 401


def test_usage_of_another_tenant_is_never_seen(alice, charlie, rows):
    theirs = rows["theirs"]
    for path in ENDPOINTS:
        # Another tenant's agent id answers like an unknown one: an empty result.
        foreign = alice.client.get(f"{path}?agent={theirs.pk}")
        missing = alice.client.get(f"{path}?agent=999999999")
        assert foreign.status_code == missing.status_code == 200
        assert foreign.json() == missing.json() == {
            "count": 0, "next": None, "previous": None, "results": []
        }  # fmt: skip
        # Alice's totals are hers only; Charlie sees his row only.
        exported = read_csv(alice.client.get(f"{path}?format=csv"))
        assert sum(int(r["sessions"]) for r in exported) == sum(
            r.sessions for r in rows["mine"] if r.day >= days_ago(29)
        )
        his = charlie.client.get(path).json()["results"]
        assert [r["sessions"] for r in his] == [rows["foreign"].sessions]
    assert rows["foreign"].pk not in ids(
        alice.client.get(f"{USAGE}?date_from={days_ago(60)}").json()
    )
