"""Fixtures come from voice_platform.live_emulator.pytest_plugin (root conftest)."""
