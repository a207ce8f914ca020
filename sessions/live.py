"""Wiring a bridge to the real Live endpoint, from settings and the tenant's key."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from django.conf import settings
from google.genai.live import AsyncSession

from agents.live_config import live_config_build
from sessions.bridge import BridgeConfig
from sessions.models import ClientToken
from sessions.relay.backoff import Backoff
from sessions.relay.client import live_client
from sessions.relay.upstream import ConnectFactory, UpstreamSettings
from sessions.services import SessionGrant, voice_session_open, voice_session_resume
from sessions.tool_gateway import ServiceToolGateway, ToolGateway
from tools.calls import tool_allowlist_for_agent, tool_call_next_turn
from voice_platform.tenancy.services import tenant_gemini_key


def bridge_config() -> BridgeConfig:
    upstream = UpstreamSettings(
        connect_timeout=settings.LIVE_CONNECT_TIMEOUT,
        ping_interval=settings.LIVE_PING_INTERVAL,
        reply_timeout=settings.LIVE_REPLY_TIMEOUT,
        idle_timeout=settings.LIVE_IDLE_TIMEOUT,
        reply_retries=settings.LIVE_REPLY_RETRIES,
        session_limit=settings.LIVE_SESSION_LIMIT,
        go_away_spread=settings.LIVE_GO_AWAY_SPREAD,
        backoff=Backoff(
            base=settings.LIVE_RECONNECT_BASE,
            cap=settings.LIVE_RECONNECT_CAP,
            max_tries=settings.LIVE_RECONNECT_TRIES,
        ),
        budget=settings.LIVE_RECONNECT_BUDGET,
        budget_window=settings.LIVE_RECONNECT_BUDGET_WINDOW,
    )
    return BridgeConfig(upstream=upstream, busy_retry_seconds=settings.LIVE_BUSY_RETRY_AFTER)


def live_session_start(
    *,
    token: str,
    resume: str,
    origin: str | None,
    channel_name: str,
    found: ClientToken | None = None,
) -> tuple[SessionGrant, ToolGateway]:
    """Open (a client token) or resume (a resume token) a session, with its tool gateway.

    One call, so a session start costs the connection one trip to a database thread.
    Raises ``SessionRefused`` with the reason to tell the client.
    """
    if resume:
        grant = voice_session_resume(
            raw_resume_token=resume, origin=origin, channel_name=channel_name
        )
    else:
        grant = voice_session_open(
            raw_token=token, origin=origin, channel_name=channel_name, found=found
        )
    return grant, tool_gateway_for(grant)


def tool_gateway_for(grant: SessionGrant) -> ToolGateway:
    """Every call goes through the tools services, so even a refused one is audited."""
    return ServiceToolGateway(
        session=grant.session,
        allowlist=tool_allowlist_for_agent(agent=grant.agent),
        execution=settings.TOOL_EXECUTION,
        # A new session has no tool calls yet: only a resumed one goes on from its last.
        first_turn=tool_call_next_turn(session_id=grant.session.pk) if grant.resumed else 0,
    )


def connect_factory(grant: SessionGrant, tools: ToolGateway) -> ConnectFactory:
    """Open the agent's Live session with the tenant's own key, else the platform's."""
    api_key = tenant_gemini_key(tenant=grant.tenant) or settings.GEMINI_API_KEY
    client = live_client(
        api_key,
        settings.LIVE_API_BASE_URL,
        settings.LIVE_API_VERSION,
        settings.LIVE_API_CA_FILE,
        deflate=settings.LIVE_UPSTREAM_DEFLATE,
        keepalive=(settings.LIVE_KEEPALIVE_INTERVAL, settings.LIVE_KEEPALIVE_TIMEOUT),
    )
    agent = grant.agent
    declarations = tools.function_declarations()

    def connect(handle: str | None) -> AbstractAsyncContextManager[AsyncSession]:
        config = live_config_build(
            agent=agent, resumption_handle=handle, function_declarations=declarations
        )
        return client.aio.live.connect(model=agent.model, config=config)

    return connect
