"""`python -m voice_platform.live_emulator`: the emulator without Django (bench, CI)."""

from voice_platform.live_emulator.cli import main

main()
