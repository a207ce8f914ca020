"""Settings of the Daphne processes the console tests start: the test settings, with
brute-force protection on (the test settings turn it off for the whole run) at a limit low
enough for the 4030 test. Each of those processes has a Redis of its own (conftest.py)."""

from voice_platform.settings.test import *  # noqa: F403

AUTH_FAILURE_LIMIT = 3
