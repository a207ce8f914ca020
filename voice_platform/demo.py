"""Demo data for ``make run``: the bootstrap (tenant, admin user) with a demo agent and a
fresh API key on every call."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from agents.models import Agent
from agents.services import agent_create
from voice_platform.tenancy.bootstrap import bootstrap
from voice_platform.tenancy.models import Tenant
from voice_platform.tenancy.scope import tenant_scope

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
    password = demo_admin_password()
    created = bootstrap(
        tenant_name="Demo tenant",
        tenant_slug=DEMO_TENANT_SLUG,
        admin_username=DEMO_ADMIN_USERNAME,
        admin_password=password,
        new_api_key=True,
        api_key_name="demo key",
        max_concurrent_sessions=20,
    )
    tenant = Tenant.objects.get(slug=created.tenant_slug)
    user = get_user_model().objects.get(username=created.admin_username)
    # Derived from SECRET_KEY: a changed key changes the password the demo prints.
    if not user.check_password(password):
        user.set_password(password)
        user.save()

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
    if created.api_key is None:  # never: new_api_key=True mints one
        raise RuntimeError("bootstrap minted no API key")
    return DemoData(
        tenant=tenant.slug,
        admin_username=created.admin_username,
        admin_password=password,
        agent_id=agent.pk,
        api_key=created.api_key,
    )
