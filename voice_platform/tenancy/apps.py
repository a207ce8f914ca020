from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "voice_platform.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from voice_platform.tenancy import schema  # noqa: F401  (registers the extension)
