"""The Alert admin (read-only, tenant-scoped) and the tenant's alert webhook settings."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from analytics.alert_webhooks import tenant_alert_webhook_secret
from analytics.models import Alert
from tests.helpers import logged_in
from voice_platform.tenancy.models import Tenant

pytestmark = pytest.mark.django_db


def make_alert(agent: Any) -> Alert:
    # unscoped: fixtures build rows outside any scope.
    alert = Alert(
        tenant=agent.tenant, agent=agent, scope=f"agent:{agent.pk}", raised_at=timezone.now(),
        window_seconds=300, threshold=0.2, events=10, failures=5, error_rate=0.5,
        peak_error_rate=0.5, deliveries=[{"event": "alert.raised", "status": "delivered"}],
    )  # fmt: skip
    alert.save()
    return alert


def test_admin_alerts_show_only_own_tenant_and_are_read_only(
    alice_staff: Any, alice_agent: Any, charlie_agent: Any
) -> None:
    own, foreign = make_alert(alice_agent), make_alert(charlie_agent)
    client = logged_in(alice_staff)

    listing = client.get("/admin/analytics/alert/")
    assert listing.status_code == 200
    assert f"agent:{own.agent_id}" in listing.text
    assert f"agent:{foreign.agent_id}" not in listing.text
    page = client.get(f"/admin/analytics/alert/{own.pk}/change/")
    assert page.status_code == 200
    assert "alert.raised" in page.text
    assert 'name="_save"' not in page.text  # nothing to save
    assert client.get(f"/admin/analytics/alert/{foreign.pk}/change/").status_code == 404
    assert client.get("/admin/analytics/alert/999999/change/").status_code == 404
    assert (
        client.post(f"/admin/analytics/alert/{own.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    assert Alert.unscoped.count() == 2


def test_admin_tenant_alert_webhook_secret_generated_once_and_encrypted(
    alice: Any, alice_staff: Any
) -> None:
    client = logged_in(alice_staff)
    url = f"/admin/tenancy/tenant/{alice.tenant.pk}/change/"
    form = {"name": "Alice Inc", "alert_webhook_url": "https://hooks.example.com/alerts"}

    response = client.post(url, form, follow=True)
    shown = [str(m) for m in response.context["messages"] if "will not be shown again" in str(m)]
    assert len(shown) == 1
    secret = shown[0].rsplit(": ", 1)[1]
    assert secret.startswith("whsec_")
    tenant = Tenant.objects.get(pk=alice.tenant.pk)
    assert tenant.alert_webhook_url == "https://hooks.example.com/alerts"
    assert secret not in tenant.alert_webhook_secret_encrypted
    assert tenant_alert_webhook_secret(tenant=tenant) == secret
    assert secret not in client.get(url).text

    # Saving again keeps it (no new secret shown); asking for a new one replaces it.
    again = client.post(url, form, follow=True)
    assert not [m for m in again.context["messages"] if "will not be shown again" in str(m)]
    client.post(url, {**form, "new_alert_webhook_secret": "on"})
    tenant.refresh_from_db()
    assert tenant_alert_webhook_secret(tenant=tenant) not in ("", secret)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("alert_webhook_url", "https://10.0.0.7/alerts", "private address 10.0.0.7"),
        ("alert_webhook_url", "http://hooks.example.com/", "only https://"),
        ("alert_webhook_secret", "not-a-secret", "Expected whsec_"),
    ],
)
def test_admin_tenant_alert_webhook_refuses_bad_input(
    alice: Any, alice_staff: Any, field: str, value: str, error: str
) -> None:
    form = {"name": "Alice Inc", "alert_webhook_url": "https://hooks.example.com/", field: value}
    response = logged_in(alice_staff).post(f"/admin/tenancy/tenant/{alice.tenant.pk}/change/", form)
    assert response.status_code == 200  # the form again, with the reason
    assert error in str(response.context["adminform"].form.errors)
    assert Tenant.objects.get(pk=alice.tenant.pk).alert_webhook_url == ""
