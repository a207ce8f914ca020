"""Settings behave as documented: checked in fresh interpreters, as a server would start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "voice_platform.settings.production",
    "SECRET_KEY": "x9!Lq2#vP0zR7@wT4^mN8&kB3*hJ6(dF1)sG5_aE-cY+uI=oQ{rW}tZ]xV[bM;nL:",
    "ALLOWED_HOSTS": "voice.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://voice.example.com",
    "DATABASE_URL": "sqlite:///:memory:",
}


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    clean.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_settings_refuse_to_start_without_secret_key_when_debug_off(tmp_path):
    result = run_manage(
        "check",
        env={
            "DJANGO_SETTINGS_MODULE": "voice_platform.settings.production",
            "VAR_DIR": str(tmp_path),
        },
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_settings_dev_key_generated_once_and_kept(tmp_path):
    env = {"DJANGO_SETTINGS_MODULE": "voice_platform.settings.local", "VAR_DIR": str(tmp_path)}
    assert run_manage("check", env=env).returncode == 0
    key = (tmp_path / "secret_key").read_text()
    assert len(key) >= 50
    assert run_manage("check", env=env).returncode == 0
    assert (tmp_path / "secret_key").read_text() == key
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"


def test_settings_production_check_deploy_is_clean(tmp_path):
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={**PRODUCTION_ENV, "VAR_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_settings_production_refuses_weak_secret(tmp_path):
    env = {**PRODUCTION_ENV, "SECRET_KEY": "short", "VAR_DIR": str(tmp_path)}
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY is too weak" in result.stderr


def test_settings_bad_boolean_is_a_clear_error(tmp_path):
    result = run_manage(
        "check",
        env={
            "DJANGO_SETTINGS_MODULE": "voice_platform.settings.local",
            "DEBUG": "maybe",
            "VAR_DIR": str(tmp_path),
        },
    )
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "shown"),
    [
        ("METRICS_ALLOWED_NETWORKS", "10.0.0.0/8,intranet", "'intranet'"),
        ("METRICS_ALLOWED_NETWORKS", "2001:db8::/64,::1", "'::1'"),
        ("TRUSTED_PROXIES", "proxy", "'proxy'"),
        ("ALERT_ERROR_RATE", "lots", "'lots'"),
        ("LIVE_CONNECT_TIMEOUT", "ten", "'ten'"),
        ("LIVE_WS_MESSAGE_RATE", "fast", "'fast'"),
        ("AUTH_FAILURE_LIMIT", "many", "'many'"),
        # Each of these once made every REST call (or the first token) a 500.
        ("API_KEY_RATE", "lots", "'lots'"),
        ("REDIS_URL", "redis//localhost:6379", "redis://"),
        ("REDIS_URL", "redis://localhost:six/0", "not a valid URL"),
        ("DATABASE_URL", "postgress://db/voice", "not a database URL"),
    ],
)
def test_a_bad_setting_fails_start_up_naming_it(tmp_path, variable, value, shown):
    result = run_manage("check", env={"VAR_DIR": str(tmp_path), variable: value})
    assert result.returncode != 0
    assert variable in result.stderr
    assert shown in result.stderr


def test_production_refuses_the_sqlite_default(tmp_path):
    """A misspelt DATABASE_URL must not quietly mean a SQLite file in production."""
    env = {**PRODUCTION_ENV, "DATABASE_URL": "", "DATABSE_URL": "postgres://db/voice"}
    result = run_manage("check", env={**env, "VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "DATABASE_URL must be set in production" in result.stderr
