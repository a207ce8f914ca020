"""Production settings refuse a placeholder secret; SECRET_KEY_FILE supplies the key (the
compose stack generates one into a volume), checked like the variable itself."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

PRODUCTION = Path(__file__).resolve().parents[2] / "voice_platform" / "settings" / "production.py"
GOOD = "q8Zr-3vX_kT1pWm9LbN4cY7hJ2sD6fG0aE5uR8iO3tK1zV9xB4nM7lQ2wS6eH0jU"


@pytest.fixture
def production_env(monkeypatch, tmp_path):
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "postgres://u@127.0.0.1:5432/db")
    monkeypatch.delenv("SECRET_KEY_FILE", raising=False)
    monkeypatch.delenv("DEBUG", raising=False)
    # production.py imports base: run that afresh too, with this environment.
    monkeypatch.delitem(sys.modules, "voice_platform.settings.base", raising=False)
    return monkeypatch


def load() -> dict:
    return runpy.run_path(str(PRODUCTION))


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "must be set"),
        ("short-but-random-Zq81", "too weak"),
        ("a" * 40 + "bcdef", "too weak"),  # under 50
        ("abab" * 20, "too weak"),  # long, but two characters
        (
            "change-me-to-a-long-random-string-of-at-least-fifty-characters-0123456789",
            "placeholder",
        ),
        ("CHANGE-ME" + GOOD, "placeholder"),
        ("django-insecure-" + GOOD, "placeholder"),
    ],
)
def test_production_refuses_a_placeholder_or_weak_secret(production_env, key, why):
    production_env.setenv("SECRET_KEY", key)
    with pytest.raises(ImproperlyConfigured) as refused:
        load()
    message = str(refused.value)
    assert "SECRET_KEY" in message
    assert why in message
    if key:
        assert key not in message  # the secret never appears in an error


def test_production_accepts_a_random_secret(production_env):
    production_env.setenv("SECRET_KEY", GOOD)
    assert load()["SECRET_KEY"] == GOOD


def test_secret_key_file_supplies_the_key(production_env, tmp_path):
    path = tmp_path / "secret_key"
    path.write_text(GOOD + "\n")  # a trailing newline, as `echo` writes it
    production_env.delenv("SECRET_KEY", raising=False)
    production_env.setenv("SECRET_KEY_FILE", str(path))
    assert load()["SECRET_KEY"] == GOOD


def test_secret_key_wins_over_the_file(production_env, tmp_path):
    path = tmp_path / "secret_key"
    path.write_text("f" * 10 + GOOD)
    production_env.setenv("SECRET_KEY", GOOD)
    production_env.setenv("SECRET_KEY_FILE", str(path))
    assert load()["SECRET_KEY"] == GOOD


def test_a_weak_key_in_the_file_is_refused_too(production_env, tmp_path):
    path = tmp_path / "secret_key"
    path.write_text("change-me")
    production_env.delenv("SECRET_KEY", raising=False)
    production_env.setenv("SECRET_KEY_FILE", str(path))
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY is a placeholder"):
        load()


@pytest.mark.parametrize("contents", [None, "", "  \n"])
def test_a_missing_or_empty_key_file_is_refused_naming_it(production_env, tmp_path, contents):
    path = tmp_path / "secret_key"
    if contents is not None:
        path.write_text(contents)
    production_env.delenv("SECRET_KEY", raising=False)
    production_env.setenv("SECRET_KEY_FILE", str(path))
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY_FILE"):
        load()
