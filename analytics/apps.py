from django.apps import AppConfig
from django.conf import settings


class AnalyticsConfig(AppConfig):
    name = "analytics"
    verbose_name = "Analytics and alerts"

    def ready(self) -> None:
        from analytics import alerts, rollup
        from voice_platform import periodic

        # Every server process runs these from its maintenance loop (voice_platform.periodic).
        # Shared: one process per interval runs each (a lease in the cache).
        periodic.register(
            "alerts", lambda: settings.ALERT_EVALUATE_INTERVAL, alerts.evaluate_all, shared=True
        )
        periodic.register(
            "usage_rollup", lambda: settings.USAGE_ROLLUP_INTERVAL, rollup.rollup_recent,
            shared=True,
        )  # fmt: skip
