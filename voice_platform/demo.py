"""Demo data for ``make run``: a tenant, its admin user, an agent and a fresh API key."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from agents.models import Agent
from agents.services import agent_create
from voice_platform.tenancy.models import Membership, Tenant
from voice_platform.tenancy.scope import tenant_scope
from voice_platform.tenancy.services import api_key_create, membership_create, tenant_create

DEMO_TENANT_SLUG = "demo"
DEMO_ADMIN_USERNAME = "demo-admin"
DEMO_AGENT_SLUG = "demo-assistant"


@dataclass(frozen=True)
class DemoData:
    tenant: str
    admin_username: str
    admin_password: str
    agent_id: int
    api_key: str

    def as_json(self) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "admin": {"username": self.admin_username, "password": self.admin_password},
            "agent_id": self.agent_id,
            "api_key": self.api_key,
        }


# What the demo agent may call: the time anywhere, and mail to example.com only.
DEMO_TOOLS: dict[str, dict[str, object]] = {
    "get_current_time": {},
    "send_email": {"allowed_domains": ["example.com"]},
}


def _allowlist_demo_tools(*, tenant: Tenant, agent: Agent) -> None:
    from tools.models import AgentTool
    from tools.services import agent_tool_create, tool_sync_registry

    tool_sync_registry()
    for name, policy in DEMO_TOOLS.items():
        if not AgentTool.objects.filter(agent=agent, tool__name=name).exists():
            agent_tool_create(tenant=tenant, agent=agent, tool_name=name, policy=policy)


def demo_admin_password() -> str:
    """Stable across calls without being stored: derived from this install's SECRET_KEY."""
    digest = hmac.new(settings.SECRET_KEY.encode(), b"demo-admin-password", hashlib.sha256)
    return "demo-" + digest.hexdigest()[:20]


@transaction.atomic
def demo_bootstrap() -> DemoData:
    """Idempotent: reuses what exists; only the API key is new on every call."""
    tenant = Tenant.objects.filter(slug=DEMO_TENANT_SLUG).first() or tenant_create(
        name="Demo tenant", slug=DEMO_TENANT_SLUG, max_concurrent_sessions=20
    )
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(
        username=DEMO_ADMIN_USERNAME, defaults={"is_staff": True}
    )
    password = demo_admin_password()
    if not user.is_staff or not user.check_password(password):
        user.is_staff = True
        user.set_password(password)
        user.save()
    membership_create(user=user, tenant=tenant, role=Membership.Role.ADMIN)

    with tenant_scope(tenant.pk):
        agent = Agent.objects.filter(slug=DEMO_AGENT_SLUG).first() or agent_create(
            tenant=tenant,
            name="Demo assistant",
            slug=DEMO_AGENT_SLUG,
            model=settings.LIVE_MODELS[0],
            response_modality=Agent.Modality.AUDIO,
            voice="Puck" if "Puck" in settings.LIVE_VOICES else "",
            system_instruction="You are a friendly demo voice assistant. Keep answers short.",
            input_transcription=True,
            output_transcription=True,
        )
        _allowlist_demo_tools(tenant=tenant, agent=agent)
        issued = api_key_create(tenant=tenant, name="demo key")
    return DemoData(
        tenant=tenant.slug,
        admin_username=user.get_username(),
        admin_password=password,
        agent_id=agent.pk,
        api_key=issued.raw_key,
    )
