"""REST routes of usage analytics (docs/analytics.md)."""

from __future__ import annotations

from django.urls import URLPattern, path

from analytics.apis import UsageDailyListApi, UsageSummaryApi

urlpatterns: list[URLPattern] = [
    path("usage/", UsageDailyListApi.as_view(), name="usage-list"),
    path("usage/summary/", UsageSummaryApi.as_view(), name="usage-summary"),
]
