from django.apps import AppConfig
from django.conf import settings


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrator webhooks"

    def ready(self) -> None:
        from integrations import dispatch
        from voice_platform import periodic

        # Deliveries whose wake-up was lost or is too far off for a countdown (a retry an
        # hour later), and attempts whose process died: one process per interval sweeps.
        periodic.register(
            "webhook_deliveries",
            lambda: settings.WEBHOOK_SWEEP_INTERVAL,
            dispatch.sweep,
            shared=True,
        )
