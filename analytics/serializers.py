"""Usage analytics in and out: the query filters, the JSON rows and their CSV columns."""

from __future__ import annotations

import datetime
from typing import Any

from django.core.validators import MinValueValidator
from django.utils import timezone
from rest_framework import serializers

from analytics.models import UsageDaily
from tools.models import ToolCallRecord
from voice_platform.rest_input import IdFilterField

MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 30
# Older than any usage, and far enough from date.min that the default range never overflows.
EARLIEST_DAY = datetime.date(2000, 1, 1)
TOOL_CALL_STATUSES = tuple(ToolCallRecord.Status.values)


def utc_today() -> datetime.date:
    return timezone.now().astimezone(datetime.UTC).date()


class UsageFilterSerializer(serializers.Serializer[dict[str, Any]]):
    agent = IdFilterField(
        required=False,
        help_text="An agent id (a deleted agent's too). Another tenant's agent matches nothing.",
    )
    date_from = serializers.DateField(
        required=False,
        validators=[MinValueValidator(EARLIEST_DAY)],
        help_text="First day (UTC, YYYY-MM-DD, from 2000-01-01), inclusive. "
        "Default: 29 days before date_to.",
    )
    date_to = serializers.DateField(
        required=False,
        validators=[MinValueValidator(EARLIEST_DAY)],
        help_text="Last day (UTC, YYYY-MM-DD, from 2000-01-01), inclusive. Default: today (UTC). "
        f"At most {MAX_RANGE_DAYS} days from date_from to date_to.",
    )
    format = serializers.ChoiceField(
        required=False,
        choices=["json", "csv"],
        help_text="csv: the same rows as a CSV attachment, unpaginated (or Accept: text/csv).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        date_to = attrs.get("date_to")
        date_from = attrs.get("date_from")
        if date_to is None:
            date_to = utc_today()
        if date_from is None:
            date_from = date_to - datetime.timedelta(days=DEFAULT_RANGE_DAYS - 1)
        if date_to < date_from:
            raise serializers.ValidationError(
                {"date_to": [f"Must not be before date_from ({date_from}); default: today (UTC)."]}
            )
        if (date_to - date_from).days + 1 > MAX_RANGE_DAYS:
            raise serializers.ValidationError(
                {
                    "date_from": [
                        f"The range may span at most {MAX_RANGE_DAYS} days "
                        "(date_from to date_to, inclusive)."
                    ]
                }
            )
        return {**attrs, "date_from": date_from, "date_to": date_to}


def tool_call_counts(counts: dict[str, int]) -> dict[str, int]:
    """Every status present, zeros included, so the shape never depends on the data."""
    return {**{status: 0 for status in TOOL_CALL_STATUSES}, **counts}


class _UsageFiguresSerializer(serializers.Serializer[Any]):
    """The figures a per-agent row and a day's total share."""

    day = serializers.DateField(read_only=True)
    sessions = serializers.IntegerField(read_only=True)
    sessions_failed = serializers.IntegerField(read_only=True)
    turns = serializers.IntegerField(read_only=True)
    audio_in_minutes = serializers.SerializerMethodField(
        help_text="Minutes of audio from the client (16 kHz PCM bytes received)."
    )
    audio_out_minutes = serializers.SerializerMethodField(
        help_text="Minutes of model audio sent (24 kHz PCM bytes)."
    )
    prompt_tokens = serializers.IntegerField(read_only=True)
    response_tokens = serializers.IntegerField(read_only=True)
    total_tokens = serializers.IntegerField(read_only=True)
    tool_calls = serializers.SerializerMethodField(
        help_text="Tool calls of the day's sessions by status: " + ", ".join(TOOL_CALL_STATUSES)
    )
    # A field named like Serializer.errors: DRF's metaclass moves declared fields off the
    # class, so the property is untouched at run time; only the type checker sees a clash.
    errors = serializers.IntegerField(  # type: ignore[assignment]
        read_only=True, help_text="Failed sessions plus the errors sessions survived."
    )
    reply_p50_ms = serializers.FloatField(
        read_only=True,
        allow_null=True,
        help_text="Median reply latency: the upper bound of its histogram bucket (ms).",
    )
    reply_p95_ms = serializers.FloatField(read_only=True, allow_null=True)
    latency_histogram = serializers.ListField(
        child=serializers.IntegerField(),
        read_only=True,
        help_text="Turns per reply-latency bucket (docs/analytics.md lists the bounds).",
    )

    def get_audio_in_minutes(self, obj: Any) -> float:
        return round(float(obj.audio_in_seconds) / 60, 2)

    def get_audio_out_minutes(self, obj: Any) -> float:
        return round(float(obj.audio_out_seconds) / 60, 2)

    def get_tool_calls(self, obj: Any) -> dict[str, int]:
        return tool_call_counts(obj.tool_calls)


class UsageDailySerializer(_UsageFiguresSerializer, serializers.ModelSerializer[UsageDaily]):
    """One agent's usage on one day (UTC), as of the last rollup."""

    agent = serializers.SerializerMethodField(
        help_text="The agent's id (kept when it was deleted); null for sessions of agents "
        "deleted before they were rolled up."
    )
    agent_name = serializers.SerializerMethodField()
    agent_deleted = serializers.SerializerMethodField()

    class Meta:
        model = UsageDaily
        fields = (
            "id", "day", "agent", "agent_name", "agent_deleted", "sessions", "sessions_failed",
            "turns", "audio_in_minutes", "audio_out_minutes", "prompt_tokens",
            "response_tokens", "total_tokens", "tool_calls", "errors", "reply_p50_ms",
            "reply_p95_ms", "latency_histogram", "updated_at",
        )  # fmt: skip
        read_only_fields = fields

    def get_agent(self, obj: UsageDaily) -> int | None:
        return obj.agent_ref or None

    def get_agent_name(self, obj: UsageDaily) -> str:
        return obj.agent.name if obj.agent is not None else ""

    def get_agent_deleted(self, obj: UsageDaily) -> bool:
        return obj.agent_id is None


class UsageDaySerializer(_UsageFiguresSerializer):
    """One day's usage (UTC) across the agents, as of the last rollup."""

    agents = serializers.IntegerField(
        read_only=True, help_text="Agents with usage that day (a deleted agents' row counts)."
    )


def usage_csv_row(row: dict[str, Any]) -> dict[str, Any]:
    """A JSON row flattened for CSV: one column per tool-call status, no histogram."""
    flat = {k: v for k, v in row.items() if k not in {"tool_calls", "latency_histogram"}}
    for status, n in row["tool_calls"].items():
        flat[f"tool_calls_{status}"] = n
    return flat


def usage_csv_columns(serializer: type[serializers.BaseSerializer[Any]]) -> list[str]:
    """The CSV header of rows of ``serializer``, in its field order."""
    columns: list[str] = []
    instance = serializer()
    assert isinstance(instance, serializers.Serializer)  # noqa: S101 (narrows for the checker)
    for name in instance.fields.keys():  # noqa: SIM118 (the stubs type iteration wrongly)
        if name == "tool_calls":
            columns += [f"tool_calls_{status}" for status in TOOL_CALL_STATUSES]
        elif name != "latency_histogram":
            columns.append(name)
    return columns
