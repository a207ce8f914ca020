from __future__ import annotations

import pytest
from django_scopes.exceptions import ScopeError

from agents.models import Agent
from voice_platform.tenancy.scope import all_tenants, current_tenant_id, tenant_scope

pytestmark = pytest.mark.django_db


def test_scoped_manager_fails_closed_outside_scope(alice_agent):
    with pytest.raises(ScopeError):
        list(Agent.objects.all())


def test_tenant_scope_filters_to_one_tenant(alice, alice_agent, charlie_agent):
    with tenant_scope(alice.tenant.pk):
        assert list(Agent.objects.all()) == [alice_agent]
        assert not Agent.objects.filter(pk=charlie_agent.pk).exists()
        assert current_tenant_id() == alice.tenant.pk
    assert current_tenant_id() is None


def test_all_tenants_escape_hatch_sees_everything(alice_agent, charlie_agent):
    with all_tenants():
        assert set(Agent.objects.all()) == {alice_agent, charlie_agent}
        assert current_tenant_id() is None
