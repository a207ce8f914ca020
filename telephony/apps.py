from django.apps import AppConfig


class TelephonyConfig(AppConfig):
    name = "telephony"
    verbose_name = "Telephony"

    def ready(self) -> None:
        # The phone's built-in tools (end_call, transfer_call) join the tool registry.
        from telephony import calls, tools  # noqa: F401
        from voice_platform import periodic

        # Calls whose end no stream or carrier request recorded get their final state.
        periodic.register("phone_calls", lambda: 60.0, calls.phone_call_sweep, shared=True)
