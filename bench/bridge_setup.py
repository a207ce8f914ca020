"""Platform-side setup for bench/bridge_bench.py: a bench database, tenant, agent, tokens.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/voice_platform_bench \\
        .venv/bin/python -m bench.bridge_setup --count 201

Creates the database if it is missing (the orchestrator migrates it), reuses or creates
the tenant `bench-bridge` (concurrency limit 100 000) and its AUDIO agent, ends sessions a
previous run left live, and prints `{"agent_id": ..., "tokens": [...]}` with `--count`
single-use client tokens.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

TENANT_SLUG = "bench-bridge"
AGENT_SLUG = "bench-echo"
MAX_SESSIONS = 100_000


def ensure_database(url: str) -> None:
    """CREATE DATABASE if missing (connecting to the server's `postgres` database)."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def bench_tenant_agent(
    *, tenant_slug: str, tenant_name: str, agent_slug: str, agent_name: str
) -> tuple[Any, Any]:
    """Django set up; the bench tenant (its session limit out of the way) and its AUDIO
    agent, created when missing, and no session of an interrupted run left live."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voice_platform.settings.local")
    django.setup()
    from django.conf import settings

    from agents.models import Agent
    from agents.services import agent_create
    from sessions.models import VoiceSession
    from voice_platform.tenancy.models import Tenant
    from voice_platform.tenancy.scope import tenant_scope
    from voice_platform.tenancy.services import tenant_create

    tenant = Tenant.objects.filter(slug=tenant_slug).first() or tenant_create(
        name=tenant_name, slug=tenant_slug, max_concurrent_sessions=MAX_SESSIONS
    )
    if tenant.max_concurrent_sessions < MAX_SESSIONS:
        tenant.max_concurrent_sessions = MAX_SESSIONS
        tenant.save(update_fields=["max_concurrent_sessions"])
    with tenant_scope(tenant.pk):
        # Transcription off: the emulator's echo mode answers audio with audio only.
        agent = Agent.objects.filter(slug=agent_slug).first() or agent_create(
            tenant=tenant,
            name=agent_name,
            slug=agent_slug,
            model=settings.LIVE_MODELS[0],
            response_modality=Agent.Modality.AUDIO,
        )
        # Leftovers of an interrupted run would count against nothing (the limit is huge),
        # but keep the table honest.
        VoiceSession.objects.filter(status__in=VoiceSession.LIVE_STATUSES).update(
            status=VoiceSession.Status.ENDED
        )
    return tenant, agent


def issue_tokens(count: int) -> dict[str, object]:
    tenant, agent = bench_tenant_agent(
        tenant_slug=TENANT_SLUG, tenant_name="Bridge bench",
        agent_slug=AGENT_SLUG, agent_name="Bench echo",
    )  # fmt: skip
    from sessions.tokens import client_token_issue
    from voice_platform.tenancy.scope import tenant_scope

    with tenant_scope(tenant.pk):
        tokens = [
            client_token_issue(
                tenant=tenant,
                agent=agent,
                end_user_id=f"bench-{index}",
                new_session_expire_seconds=600,
            ).raw
            for index in range(count)
        ]
    return {"agent_id": agent.pk, "model": agent.model, "tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--create-database", action="store_true")
    args = parser.parse_args()
    if args.create_database:
        ensure_database(os.environ["DATABASE_URL"])
        return
    print(json.dumps(issue_tokens(args.count)))


if __name__ == "__main__":
    main()
