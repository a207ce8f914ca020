from django.apps import AppConfig


class LiveEmulatorConfig(AppConfig):
    name = "voice_platform.live_emulator"
    label = "live_emulator"
    verbose_name = "Live emulator"
