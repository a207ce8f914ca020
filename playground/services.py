"""Client tokens for the playground: issued server-side for the signed-in staff user."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser

from agents.models import Agent
from sessions.tokens import IssuedClientToken, client_token_issue
from voice_platform.tenancy.scope import tenant_scope

# Long enough to read the page before pressing Start; one session per token.
PLAYGROUND_TOKEN_SECONDS = 600
PLAYGROUND_NEW_SESSION_SECONDS = 300


def playground_token_issue(
    *, agent: Agent, user: AbstractBaseUser | AnonymousUser
) -> IssuedClientToken:
    """A one-use client token for ``agent``, its end user named after the staff user so the
    stored session shows who tried the agent."""
    username = str(user.get_username())
    # The agent's own tenant (a superuser's request runs across all tenants).
    with tenant_scope(agent.tenant_id):
        return client_token_issue(
            tenant=agent.tenant,
            agent=agent,
            end_user_id=f"playground:{username}"[:200],
            expire_seconds=PLAYGROUND_TOKEN_SECONDS,
            new_session_expire_seconds=PLAYGROUND_NEW_SESSION_SECONDS,
            uses=1,
            metadata={"source": "playground", "staff_user": username},
        )
