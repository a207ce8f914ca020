from __future__ import annotations

import pytest

from tests.helpers import logged_in
from voice_platform.tenancy.models import ApiKey, Tenant
from voice_platform.tenancy.services import hash_secret, tenant_gemini_key

pytestmark = pytest.mark.django_db


def test_admin_api_key_shown_once_then_only_prefix(alice, alice_staff):
    client = logged_in(alice_staff)
    response = client.post(
        "/admin/tenancy/apikey/add/", {"tenant": "", "name": "backend"}, follow=True
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"] if "will not be shown again" in str(m)]
    assert len(shown) == 1
    raw = shown[0].rsplit(": ", 1)[1]
    key = ApiKey.unscoped.get(name="backend")
    assert key.tenant_id == alice.tenant.pk
    assert key.key_hash == hash_secret(raw)
    change = client.get(f"/admin/tenancy/apikey/{key.pk}/change/")
    assert key.prefix in change.text
    assert raw not in change.text
    listing = client.get("/admin/tenancy/apikey/")
    assert raw not in listing.text


def test_admin_api_key_list_shows_only_own_tenant(alice, charlie, alice_staff):
    response = logged_in(alice_staff).get("/admin/tenancy/apikey/")
    assert "alice key" in response.text
    assert "charlie key" not in response.text


def test_admin_api_key_revoke_action(alice, alice_staff):
    key = ApiKey.unscoped.get(tenant=alice.tenant)
    logged_in(alice_staff).post(
        "/admin/tenancy/apikey/",
        {"action": "revoke_keys", "_selected_action": [key.pk]},
    )
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert alice.client.get("/api/v1/agents/").status_code == 401


def test_admin_api_key_revoke_other_tenant_has_no_effect(charlie, alice_staff):
    key = ApiKey.unscoped.get(tenant=charlie.tenant)
    logged_in(alice_staff).post(
        "/admin/tenancy/apikey/",
        {"action": "revoke_keys", "_selected_action": [key.pk]},
    )
    key.refresh_from_db()
    assert key.revoked_at is None


def test_admin_tenant_list_shows_only_own_tenant(alice, charlie, alice_staff):
    response = logged_in(alice_staff).get("/admin/tenancy/tenant/")
    assert "Alice Inc" in response.text
    assert "Charlie Ltd" not in response.text
    assert (
        logged_in(alice_staff).get(f"/admin/tenancy/tenant/{charlie.tenant.pk}/change/").status_code
        == 302
    )


def test_admin_tenant_staff_cannot_lift_own_limits(alice, alice_staff):
    logged_in(alice_staff).post(
        f"/admin/tenancy/tenant/{alice.tenant.pk}/change/",
        {"name": "Alice Renamed", "status": "active", "max_concurrent_sessions": "9999"},
    )
    alice.tenant.refresh_from_db()
    assert alice.tenant.name == "Alice Renamed"
    assert alice.tenant.max_concurrent_sessions == 10


def test_admin_tenant_gemini_key_stored_encrypted(alice, alice_staff):
    logged_in(alice_staff).post(
        f"/admin/tenancy/tenant/{alice.tenant.pk}/change/",
        {"name": "Alice Inc", "gemini_api_key": "AIza-secret-123"},
    )
    tenant = Tenant.objects.get(pk=alice.tenant.pk)
    assert tenant.gemini_api_key_encrypted
    assert "AIza-secret-123" not in tenant.gemini_api_key_encrypted
    assert tenant_gemini_key(tenant=tenant) == "AIza-secret-123"
    page = logged_in(alice_staff).get(f"/admin/tenancy/tenant/{alice.tenant.pk}/change/")
    assert "AIza-secret-123" not in page.text


def test_admin_membership_is_operators_only(alice_staff, superuser):
    assert logged_in(alice_staff).get("/admin/tenancy/membership/").status_code == 403
    assert logged_in(superuser).get("/admin/tenancy/membership/").status_code == 200
