"""Admin for error-rate alerts: read-only, tenant staff see only their tenant's alerts."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.utils.html import format_html_join

from analytics.models import Alert
from voice_platform.tenancy.admin_mixins import (
    NotFoundAdminMixin,
    ReadOnlyAdminMixin,
    TenantScopedAdmin,
)

ALERT_FIELDS: list[Any] = [
    "scope", "agent", "kind", "status", "raised_at", "cleared_at", "window_seconds",
    "threshold", "events", "failures", "error_rate", "peak_error_rate", "last_error_rate",
    "delivery_log",
]  # fmt: skip


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdminMixin, NotFoundAdminMixin, TenantScopedAdmin):
    """Alerts are written by the evaluator only (``analytics.alerts``): nothing is editable."""

    list_display = [
        "raised_at", "scope", "agent", "status", "rate", "peak_rate", "failures", "events",
        "cleared_at", "last_delivery",
    ]  # fmt: skip
    list_filter = ["status", "kind"]
    list_select_related = ["agent"]
    search_fields = ["scope"]
    date_hierarchy = "raised_at"
    fields = ALERT_FIELDS
    readonly_fields = ALERT_FIELDS

    @admin.display(description="rate", ordering="error_rate")
    def rate(self, obj: Alert) -> str:
        return f"{obj.error_rate:.0%}"

    @admin.display(description="peak", ordering="peak_error_rate")
    def peak_rate(self, obj: Alert) -> str:
        return f"{obj.peak_error_rate:.0%}"

    @admin.display(description="webhook")
    def last_delivery(self, obj: Alert) -> str:
        if not obj.deliveries:
            return "-"
        last = obj.deliveries[-1]
        return f"{last.get('event', '')}: {last.get('status', '')}"

    @admin.display(description="webhook deliveries")
    def delivery_log(self, obj: Alert) -> str:
        if not obj.deliveries:
            return "-"
        return format_html_join(
            "",
            "<div>{} {} attempt {}: {} {} {}</div>",
            (
                (
                    d.get("at", ""),
                    d.get("event", ""),
                    d.get("attempt", ""),
                    d.get("status", ""),
                    d.get("http_status") or "",
                    d.get("error", ""),
                )
                for d in obj.deliveries
            ),
        )
