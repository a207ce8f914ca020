"""Every setting read from the environment is checked at start-up: a bad value stops the
settings with a message naming the variable (docs/configuration.md). The list below must
name every variable the settings modules read, so a new one cannot go in unchecked."""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

SETTINGS = Path(__file__).resolve().parents[2] / "voice_platform" / "settings"

# A value each variable must refuse.
BAD = {
    "DEBUG": "maybe", "DB_POOL": "perhaps", "LIVE_UPSTREAM_DEFLATE": "2",
    "PERIODIC_JOBS": "sometimes", "TRACING_ENABLED": "y", "TRACING_INCLUDE_CONTENT": "n",
    "ALERT_CLEAR_RATE": "1.5", "ALERT_ERROR_RATE": "lots", "ALERT_COOLDOWN_SECONDS": "-1",
    "ALERT_EVALUATE_INTERVAL": "0", "ALERT_MIN_EVENTS": "0", "ALERT_WINDOW_SECONDS": "5m",
    "AUTH_FAILURE_LIMIT": "0", "AUTH_FAILURE_WINDOW": "many", "AXES_COOLOFF_MINUTES": "-5",
    "AXES_FAILURE_LIMIT": "0", "CACHE_REDIS_TIMEOUT": "0", "CELERY_RESTORE_INTERVAL": "x",
    "CELERY_VISIBILITY_TIMEOUT": "-1", "DB_POOL_MAX_SIZE": "1", "DB_THREADS": "0",
    "LIVE_MAX_SESSIONS": "-5",
    "DB_POOL_TIMEOUT": "0",
    "LIVE_RECONNECT_BUDGET": "-3", "LIVE_RECONNECT_TRIES": "0", "LIVE_REPLY_RETRIES": "two",
    "METRICS_TENANT_LABEL_LIMIT": "0", "TOOL_RESULT_MAX_BYTES": "4k",
    "TOOL_THREADS": "0", "TOOL_THREADS_PER_TENANT": "0", "TOOL_WEBHOOK_MAX_RESPONSE_BYTES": "-1",
    "USAGE_ROLLUP_INTERVAL": "0", "LIVE_CONNECT_TIMEOUT": "ten", "LIVE_PING_INTERVAL": "0",
    "LIVE_REPLY_TIMEOUT": "nan", "LIVE_IDLE_TIMEOUT": "inf", "LIVE_KEEPALIVE_INTERVAL": "0",
    "LIVE_KEEPALIVE_TIMEOUT": "-1", "LIVE_RECONNECT_BASE": "fast", "LIVE_RECONNECT_CAP": "-1",
    "LIVE_GO_AWAY_SPREAD": "-1", "LIVE_RECONNECT_BUDGET_WINDOW": "1h", "LIVE_SESSION_LIMIT": "-1",
    "LIVE_BUSY_RETRY_AFTER": "soon", "LIVE_SHUTDOWN_GRACE": "-1",
    "LIVE_SHUTDOWN_READY_DELAY": "2s", "LIVE_DB_OUTAGE_GRACE": "x",
    "LIVE_WS_MESSAGE_RATE": "fast", "LIVE_WS_MESSAGE_BURST": "-1",
    "LIVE_WS_AUDIO_BYTES_RATE": "64k", "TRUSTED_PROXIES": "proxy",
    "METRICS_ALLOWED_NETWORKS": "2001:db8::1", "TOOL_WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/33",
    "API_KEY_RATE": "lots", "DATABASE_URL": "postgress://db/voice",
    "REDIS_URL": "redis//localhost:6379", "LIVE_API_BASE_URL": "emulator:8765",
    "LIVE_API_CA_FILE": "/nonexistent/cert.pem", "TOOL_WEBHOOK_CA_FILE": "/nonexistent/ca.pem",
    "LOG_FORMAT": "xml", "LOG_LEVEL": "loud", "SECURE_HSTS_SECONDS": "a year",
    "SECURE_SSL_REDIRECT": "always", "SECURE_HSTS_INCLUDE_SUBDOMAINS": "all",
    "SECURE_HSTS_PRELOAD": "please",
    "WEBHOOK_TIMEOUT": "0", "WEBHOOK_MAX_ATTEMPTS": "0", "WEBHOOK_RETRY_BASE": "5s",
    "WEBHOOK_RETRY_CAP": "0", "WEBHOOK_SWEEP_INTERVAL": "-1",
    "PHONE_PUBLIC_URL": "voice.example.com", "PHONE_CARRIER_CLIENT": "vonage",
    "PHONE_TOKEN_SECONDS": "1", "PHONE_PLAYBACK_LEAD": "0", "PHONE_DTMF_GAP": "20",
    "PHONE_END_CALL_WAIT": "forever",
    "SECRET_KEY": "change-me-to-a-long-random-string-of-at-least-fifty-characters-0123456789",
    "SECRET_KEY_FILE": "/nonexistent/secret_key",
}  # fmt: skip
# Free text: any value is one the setting can hold (why, for each).
FREE = {
    "GEMINI_API_KEY": "Google's key, opaque",
    "METRICS_TOKEN": "an opaque bearer token",
    "OTEL_SERVICE_NAME": "a name",
    "LIVE_API_VERSION": "the SDK's API version string",
    "TOOL_CELERY_QUEUE": "a queue name",
    "VAR_DIR": "a directory, created when needed",
    "PROMETHEUS_MULTIPROC_DIR": "a directory, created when needed",
    "ALLOWED_HOSTS": "host names; Django's own checks judge them",
    "CSRF_TRUSTED_ORIGINS": "origins; Django's own checks judge them",
    "FIELD_ENCRYPTION_KEYS": "Fernet keys, checked by voice_platform.crypto when used",
    "METRICS_TENANT_LABELS": "tenant slugs",
    "TOOL_MODULES": "modules, imported at start-up (an import error names them)",
    "LIVE_MODELS": "model names",
    "LIVE_VOICES": "voice names",
}


def variables_read() -> set[str]:
    """The variables the settings modules read through the env_* readers."""
    names = set()
    for path in SETTINGS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id.startswith("env_")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.add(node.args[0].value)
    return names


def test_every_setting_read_is_checked_or_free_text():
    read = variables_read()
    assert len(read) > 60  # the scan finds the readers: it cannot pass on nothing
    assert read - BAD.keys() - FREE.keys() == set(), "add a bad value (or a reason) here"
    assert (BAD.keys() | FREE.keys()) - read == set(), "no longer read: remove it here"


# Read only under another setting: what that one must be for the variable to be read.
NEEDS = {
    "DB_POOL": {"DATABASE_URL": "postgres://u@127.0.0.1:5432/db"},
    "DB_POOL_MAX_SIZE": {"DATABASE_URL": "postgres://u@127.0.0.1:5432/db"},
    "DB_POOL_TIMEOUT": {"DATABASE_URL": "postgres://u@127.0.0.1:5432/db"},
    "CACHE_REDIS_TIMEOUT": {"REDIS_URL": "redis://127.0.0.1:6379/0"},
}
PRODUCTION_ONLY = {
    "SECURE_HSTS_SECONDS", "SECURE_SSL_REDIRECT", "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD", "SECRET_KEY",
}  # fmt: skip


@pytest.mark.parametrize("variable", sorted(BAD))
def test_a_bad_value_stops_the_settings_naming_it(variable, monkeypatch, tmp_path):
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "sqlite:///:memory:")
    for name, value in {**NEEDS.get(variable, {}), variable: BAD[variable]}.items():
        monkeypatch.setenv(name, value)
    module = "production.py" if variable in PRODUCTION_ONLY else "base.py"
    # production.py imports base: run that afresh too, with this environment.
    monkeypatch.delitem(sys.modules, "voice_platform.settings.base", raising=False)
    with pytest.raises(ImproperlyConfigured) as refused:
        runpy.run_path(str(SETTINGS / module))
    assert variable in str(refused.value)


@pytest.mark.parametrize(
    ("env", "ok"),
    [
        ({"DB_POOL_MAX_SIZE": "12", "REDIS_URL": "redis://127.0.0.1:6379/0"}, True),
        ({"DB_POOL_MAX_SIZE": "11", "REDIS_URL": "redis://127.0.0.1:6379/0"}, False),
        ({"DB_POOL_MAX_SIZE": "20"}, True),  # in-process tools: 8 + 8 + 4
        ({"DB_POOL_MAX_SIZE": "19"}, False),
        ({"DB_POOL_MAX_SIZE": "19", "TOOL_THREADS": "7"}, True),
    ],
)
def test_the_pool_must_hold_every_thread_that_may_use_it(env, ok, monkeypatch, tmp_path):
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "postgres://u@127.0.0.1:5432/db")
    monkeypatch.delenv("REDIS_URL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delitem(sys.modules, "voice_platform.settings.base", raising=False)
    if ok:
        runpy.run_path(str(SETTINGS / "base.py"))
        return
    with pytest.raises(ImproperlyConfigured, match="DB_POOL_MAX_SIZE"):
        runpy.run_path(str(SETTINGS / "base.py"))
