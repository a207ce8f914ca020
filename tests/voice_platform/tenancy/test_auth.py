from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from voice_platform.tenancy.api import ApiKeyRateThrottle
from voice_platform.tenancy.models import ApiKey, Tenant
from voice_platform.tenancy.scope import tenant_scope
from voice_platform.tenancy.services import api_key_create, api_key_revoke, hash_secret

pytestmark = pytest.mark.django_db


def test_api_missing_key_is_401_with_challenge(alice):
    response = APIClient().get("/api/v1/agents/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["Bearer nonsense", "Bearer vpk_000000000000_unknown", "Bearer a b", "Basic dXNlcjpwdw=="],
)
def test_api_unknown_or_malformed_key_is_401(alice, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/v1/agents/").status_code == 401


def test_api_key_with_right_prefix_wrong_secret_is_401(alice):
    prefix = ApiKey.unscoped.get(tenant=alice.tenant).prefix
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {prefix}_wrongsecret")
    assert client.get("/api/v1/agents/").status_code == 401


def test_api_revoked_key_is_401(alice):
    with tenant_scope(alice.tenant.pk):
        api_key_revoke(api_key=ApiKey.objects.get())
    assert alice.client.get("/api/v1/agents/").status_code == 401


def test_api_suspended_tenant_key_is_403(alice):
    Tenant.objects.filter(pk=alice.tenant.pk).update(status=Tenant.Status.SUSPENDED)
    assert alice.client.get("/api/v1/agents/").status_code == 403


def test_api_key_stored_as_hash_only(alice):
    stored = ApiKey.unscoped.get(tenant=alice.tenant)
    assert alice.api_key not in (stored.prefix, stored.key_hash, stored.name)
    assert stored.key_hash == hash_secret(alice.api_key)
    assert alice.api_key.startswith(stored.prefix + "_")


def test_api_key_use_records_last_used(alice):
    assert alice.client.get("/api/v1/agents/").status_code == 200
    assert ApiKey.unscoped.get(tenant=alice.tenant).last_used_at is not None


def test_api_key_throttle_answers_429_with_retry_after(alice, charlie, monkeypatch):
    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": "3/min"})
    codes = [alice.client.get("/api/v1/agents/").status_code for _ in range(4)]
    other = charlie.client.get("/api/v1/agents/").status_code
    limited = alice.client.get("/api/v1/agents/")
    assert codes == [200, 200, 200, 429]
    assert other == 200  # the limit is per key, not global
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) > 0


def test_api_second_key_of_same_tenant_works(alice):
    issued = api_key_create(tenant=alice.tenant, name="second")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    assert client.get("/api/v1/agents/").status_code == 200
