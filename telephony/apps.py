from django.apps import AppConfig


class TelephonyConfig(AppConfig):
    name = "telephony"
    verbose_name = "Telephony"

    def ready(self) -> None:
        # The phone's built-in tools (end_call, transfer_call) join the tool registry.
        from telephony import tools  # noqa: F401
