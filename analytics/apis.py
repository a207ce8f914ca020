"""REST: usage analytics, per agent and day, and per day across agents (docs/analytics.md).

Thin: parse the filters, call a selector, serialize; JSON (paginated) or CSV (every row of
the range). Both read the rolled-up rows only, so they stay fast however many sessions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from analytics.renderers import CSVRenderer
from analytics.selectors import usage_daily_list, usage_summary_list
from analytics.serializers import (
    UsageDailySerializer,
    UsageDaySerializer,
    UsageFilterSerializer,
    usage_csv_columns,
    usage_csv_row,
)
from voice_platform.rest_input import validate_query
from voice_platform.tenancy.api import TenantViewMixin, request_tenant

CSV_RESPONSE = OpenApiResponse(
    response=OpenApiTypes.STR,
    description="The same rows as CSV (a header row first; tool calls one column per "
    "status), as an attachment named after the range. Unpaginated.",
)


class FormatQueryNegotiation(DefaultContentNegotiation):
    """An unknown ``?format=`` falls back to JSON, so the filters refuse it with a 400
    after authentication (DRF answers 404 before it)."""

    def filter_renderers(self, renderers: Iterable[BaseRenderer], format: str) -> list[Any]:
        offered = list(renderers)
        return [r for r in offered if r.format == format] or offered[:1]


class _UsageListApi(TenantViewMixin, generics.ListAPIView[Any]):
    renderer_classes = [JSONRenderer, CSVRenderer]
    content_negotiation_class = FormatQueryNegotiation
    csv_name = "usage"

    @property
    def csv_columns(self) -> list[str]:  # read by CSVRenderer
        return usage_csv_columns(self.get_serializer_class())

    def filters(self) -> dict[str, Any]:
        if not hasattr(self, "_filters"):
            self._filters = validate_query(UsageFilterSerializer, self.request.query_params)
        return self._filters

    def wants_csv(self) -> bool:
        return isinstance(getattr(self.request, "accepted_renderer", None), CSVRenderer)

    def paginate_queryset(self, queryset: Any) -> list[Any] | None:
        if self.wants_csv():
            return None  # an export is every row of the range (at most 366 days)
        return super().paginate_queryset(queryset)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)
        if self.wants_csv():
            filters = self.filters()
            response.data = [usage_csv_row(row) for row in response.data]
            name = f"{self.csv_name}-{filters['date_from']}-{filters['date_to']}.csv"
            response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        if isinstance(response, Response) and response.status_code >= 400:
            # Errors are the documented JSON bodies, for a CSV request too.
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


@extend_schema(
    parameters=[UsageFilterSerializer],
    responses={
        (200, "application/json"): UsageDailySerializer(many=True),
        (200, "text/csv"): CSV_RESPONSE,
    },
)
class UsageDailyListApi(_UsageListApi):
    """Usage per agent and day (UTC), newest first. Today's figures lag the sessions by
    up to USAGE_ROLLUP_INTERVAL seconds (the rollup's period)."""

    serializer_class = UsageDailySerializer

    def get_queryset(self) -> Any:
        filters = self.filters()
        return usage_daily_list(
            tenant=request_tenant(self.request),
            date_from=filters["date_from"],
            date_to=filters["date_to"],
            agent_id=filters.get("agent"),
        )


@extend_schema(
    parameters=[UsageFilterSerializer],
    responses={
        (200, "application/json"): UsageDaySerializer(many=True),
        (200, "text/csv"): CSV_RESPONSE,
    },
)
class UsageSummaryApi(_UsageListApi):
    """Usage per day across the agents (or of one, with ``agent``), newest first; days
    without usage are left out. The same lag as the per-agent rows."""

    serializer_class = UsageDaySerializer
    csv_name = "usage-summary"

    def get_queryset(self) -> Any:
        filters = self.filters()
        return usage_summary_list(
            tenant=request_tenant(self.request),
            date_from=filters["date_from"],
            date_to=filters["date_to"],
            agent_id=filters.get("agent"),
        )
