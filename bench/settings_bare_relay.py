"""Django settings for the bare relay baseline (bench/bare_relay.py): nothing but Channels.

No database, no channel layer, no middleware: the baseline must not pay for anything the
product has and it lacks.
"""

from __future__ import annotations

SECRET_KEY = "bench-bare-relay-not-secret"  # noqa: S105 - loopback benchmark only
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, object] = {}
CHANNEL_LAYERS: dict[str, object] = {}
USE_TZ = True
LOGGING_CONFIG = None
