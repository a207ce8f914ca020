"""REST routes of usage analytics (docs/analytics.md)."""

from __future__ import annotations

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
