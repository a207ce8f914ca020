"""``manage.py bootstrap``: the first tenant, admin and API key; idempotent; secrets once."""

from __future__ import annotations

import json
import logging
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from voice_platform.tenancy.models import ApiKey, Membership, Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_bootstrap_env(monkeypatch):
    for name in ("TENANT_NAME", "TENANT_SLUG", "ADMIN_USERNAME", "ADMIN_EMAIL", "ADMIN_PASSWORD"):
        monkeypatch.delenv(f"BOOTSTRAP_{name}", raising=False)


def run(*args: str) -> dict:
    out = StringIO()
    call_command("bootstrap", "--json", *args, stdout=out)
    return json.loads(out.getvalue())


def run_text(*args: str) -> str:
    out = StringIO()
    call_command("bootstrap", *args, stdout=out)
    return out.getvalue()


def api_key_works(key: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client.get("/api/v1/agents/").status_code == 200


def test_first_run_creates_tenant_admin_and_a_working_key():
    data = run()
    assert data["tenant"] == {"slug": "default-tenant", "name": "Default tenant", "created": True}
    assert data["admin"]["username"] == "admin"
    assert data["admin"]["created"] is True
    password = data["admin"]["password"]
    assert len(password) >= 20
    assert api_key_works(data["api_key"])
    user = get_user_model().objects.get(username="admin")
    assert user.is_staff
    assert not user.is_superuser
    assert Membership.objects.get(user=user).role == Membership.Role.ADMIN
    client = APIClient()
    assert client.login(username="admin", password=password)
    assert client.get("/admin/").status_code == 200  # the tenant admin's door opens


def test_second_run_changes_nothing_and_mints_no_key():
    first = run()
    user = get_user_model().objects.get(username="admin")
    text = run_text()
    assert "Already bootstrapped: nothing changed." in text
    assert "vpk_" not in text
    assert first["admin"]["password"] not in text
    second = run()
    assert second == {
        "tenant": {**first["tenant"], "created": False},
        "admin": {"username": "admin", "created": False, "password": None},
        "api_key": None,
    }
    assert Tenant.objects.count() == 1
    assert ApiKey.unscoped.count() == 1
    assert Membership.objects.count() == 1
    user.refresh_from_db()
    assert user.check_password(first["admin"]["password"])  # an existing password is kept


def test_new_api_key_mints_another_and_keeps_the_first():
    first = run()
    again = run("--new-api-key")
    assert again["api_key"]
    assert again["api_key"] != first["api_key"]
    assert again["tenant"]["created"] is False
    assert ApiKey.unscoped.count() == 2
    assert api_key_works(first["api_key"])
    assert api_key_works(again["api_key"])


def test_inputs_from_options_and_environment(monkeypatch):
    monkeypatch.setenv("BOOTSTRAP_TENANT_NAME", "Acme Calls")
    monkeypatch.setenv("BOOTSTRAP_ADMIN_USERNAME", "ops")
    monkeypatch.setenv("BOOTSTRAP_ADMIN_PASSWORD", "correct-horse-battery-staple-42")
    monkeypatch.setenv("BOOTSTRAP_ADMIN_EMAIL", "ops@example.com")
    data = run("--tenant-slug", "acme")
    assert data["tenant"] == {"slug": "acme", "name": "Acme Calls", "created": True}
    assert data["admin"] == {"username": "ops", "created": True, "password": None}
    user = get_user_model().objects.get(username="ops")
    assert user.email == "ops@example.com"
    assert user.check_password("correct-horse-battery-staple-42")
    # Options win over the environment.
    data = run("--tenant-name", "Other", "--tenant-slug", "other", "--admin-username", "ops2")
    assert data["tenant"]["slug"] == "other"
    assert data["admin"]["username"] == "ops2"


def test_human_output_shows_the_secrets_once(caplog):
    caplog.set_level(logging.DEBUG)
    text = run_text()
    assert "Bootstrap complete." in text
    assert "password: " in text
    assert "(generated; shown once" in text
    key = next(w for w in text.split() if w.startswith("vpk_"))
    assert api_key_works(key)
    assert key not in caplog.text  # printed, never logged


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant-slug", "Not A Slug!"], "tenant:"),
        (["--admin-password", "password"], "admin password:"),
        (["--admin-password", "12345678901"], "admin password:"),
        (["--admin-username", " "], "admin username"),
        (["--tenant-name", "!!!"], "--tenant-slug"),
    ],
)
def test_bad_input_is_a_clear_error_and_creates_nothing(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert Tenant.objects.count() == 0
    assert get_user_model().objects.count() == 0


def test_a_user_of_another_tenant_is_refused(alice):
    user = get_user_model().objects.create_user("taken", password="x" * 20, is_staff=True)
    Membership.objects.create(user=user, tenant=alice.tenant)
    with pytest.raises(CommandError, match="already administers"):
        run("--admin-username", "taken")
    assert not Tenant.objects.filter(slug="default-tenant").exists()


def test_demo_flag_is_what_bootstrap_demo_does():
    out = StringIO()
    call_command("bootstrap", "--demo", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert set(data) == {"tenant", "admin", "agent_id", "api_key"}
    assert data["tenant"] == "demo"
    assert api_key_works(data["api_key"])
