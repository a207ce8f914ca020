"""Shared fixtures. Two tenants everywhere: Alice's, and Charlie's that Alice must not see."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tests.factories import AgentFactory, MembershipFactory, TenantFactory
from voice_platform.tenancy.models import Tenant
from voice_platform.tenancy.services import api_key_create

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

pytest_plugins = ["voice_platform.live_emulator.pytest_plugin"]


def pytest_configure(config: pytest.Config) -> None:
    if IN_CI:
        # CI must test the real services: a missing one fails the run, never skips tests.
        engine = settings.DATABASES["default"]["ENGINE"]
        if "postgresql" not in engine:
            raise pytest.UsageError("CI=true but DATABASE_URL is not PostgreSQL")
        if not settings.REDIS_URL:
            raise pytest.UsageError("CI=true but REDIS_URL is not set")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config: pytest.Config, specs: list[Any]) -> None:
    """pytest-xdist (`make test` runs two workers): each worker gets a Redis database of its
    own, as pytest-django gives it a test database of its own (``test_<name>_gw0``). Worker
    gwN uses database N after REDIS_URL's. Otherwise the workers would share channel-layer
    groups and cache keys: session ids and other primary keys repeat across the two test
    databases. Runs on the controller; execnet sets the variable in the worker before Django
    reads its settings, and the worker's servers and Celery workers inherit it."""
    base = os.environ.get("REDIS_URL")
    if not base:
        return
    url = urlsplit(base)
    first = int(url.path.strip("/") or 0)
    for spec in specs:
        index = first + int(spec.id.removeprefix("gw"))
        spec.env["REDIS_URL"] = url._replace(path=f"/{index}").geturl()


def _db_kind(item: pytest.Item) -> int:
    """pytest-django's order of the tests: 0 database, 1 transactional database, 2 none."""
    marker = item.get_closest_marker("django_db")
    fixtures = getattr(item, "fixturenames", ())
    if (marker is not None and marker.kwargs.get("transaction")) or (
        "transactional_db" in fixtures or "live_server" in fixtures
    ):
        return 1
    return 0 if marker is not None or "db" in fixtures else 2


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked ``slow`` (a minute of real time) start first among the tests of their
    kind: under pytest-xdist they then run beside the others instead of alone at the end.
    Runs after pytest-django's reordering, which it keeps (a stable sort within its groups);
    if that order is not the one ``_db_kind`` expects, nothing moves."""
    kinds = [_db_kind(item) for item in items]
    if kinds != sorted(kinds):
        return
    items.sort(key=lambda item: (_db_kind(item), item.get_closest_marker("slow") is None))


def require_redis() -> str:
    """The Redis URL, or skip locally / fail in CI when it is not configured."""
    if not settings.REDIS_URL:
        if IN_CI:
            pytest.fail("REDIS_URL is required in CI")
        pytest.skip("REDIS_URL not set (local run without Redis)")
    return settings.REDIS_URL


def require_postgres() -> None:
    """Skip locally on SQLite (no real row locking); CI always runs on PostgreSQL."""
    if "postgresql" not in settings.DATABASES["default"]["ENGINE"]:
        if IN_CI:
            pytest.fail("PostgreSQL is required in CI")
        pytest.skip("needs PostgreSQL (DATABASE_URL)")


@dataclass
class TenantWorld:
    tenant: Tenant
    api_key: str
    client: APIClient


def _world(slug: str, name: str) -> TenantWorld:
    tenant = TenantFactory(slug=slug, name=name)
    issued = api_key_create(tenant=tenant, name=f"{slug} key")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    return TenantWorld(tenant=tenant, api_key=issued.raw_key, client=client)


@pytest.fixture
def alice(db: None) -> TenantWorld:
    return _world("alice", "Alice Inc")


@pytest.fixture
def charlie(db: None) -> TenantWorld:
    """The foreign tenant: nothing of Charlie's may ever be visible to Alice."""
    return _world("charlie", "Charlie Ltd")


@pytest.fixture
def alice_agent(alice: TenantWorld):  # type: ignore[no-untyped-def]
    return AgentFactory(tenant=alice.tenant, name="Alice agent", slug="alice-agent")


@pytest.fixture
def charlie_agent(charlie: TenantWorld):  # type: ignore[no-untyped-def]
    return AgentFactory(tenant=charlie.tenant, name="Charlie agent", slug="charlie-agent")


@pytest.fixture
def alice_staff(alice: TenantWorld):  # type: ignore[no-untyped-def]
    return MembershipFactory(tenant=alice.tenant, user__username="alice-admin").user


@pytest.fixture
def alice_viewer(alice: TenantWorld):  # type: ignore[no-untyped-def]
    return MembershipFactory(tenant=alice.tenant, user__username="alice-viewer", role="viewer").user


@pytest.fixture
def superuser(db: None):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("root", "root@example.com", "pw")
