from django.apps import AppConfig


class VoiceSessionsConfig(AppConfig):
    name = "sessions"
    # django.contrib.sessions owns the "sessions" label.
    label = "voice_sessions"
    verbose_name = "Voice sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sessions import checks  # noqa: F401 (registers the system checks)
