"""The deployment's session cap (LIVE_MAX_SESSIONS) with per-tenant guarantees, enforced.

Alice's tenant reserves sessions; Charlie's reserves none. The cap holds across processes
because it is counted in the database under one lock: racing opens never overshoot.
"""

from __future__ import annotations

import threading

import pytest
from channels.db import database_sync_to_async
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from conftest import require_postgres
from sessions.close_codes import CloseCode
from sessions.models import ClientToken, VoiceSession
from sessions.services import (
    SessionRefused,
    voice_session_end,
    voice_session_open,
    voice_session_resume,
)
from sessions.tokens import client_token_issue
from tests.factories import AgentFactory, TenantFactory
from tests.sessions.conftest import issue_token, open_client
from voice_platform.tenancy.models import Tenant
from voice_platform.tenancy.scope import tenant_scope
from voice_platform.tenancy.services import tenant_set_gemini_key

pytestmark = pytest.mark.django_db(transaction=True)


def open_session(tenant: Tenant, agent=None) -> VoiceSession | str:
    """A new session of ``tenant``, or the refusal's reason."""
    with tenant_scope(tenant.pk):
        agent = agent or AgentFactory(tenant=tenant)
        raw = client_token_issue(tenant=tenant, agent=agent, end_user_id="u").raw
        try:
            return voice_session_open(raw_token=raw, origin=None, channel_name="test").session
        except SessionRefused as refusal:
            return refusal.reason


def end(session: VoiceSession) -> None:
    with tenant_scope(session.tenant_id):
        voice_session_end(
            session_id=session.pk, channel_name=None, status=VoiceSession.Status.ENDED,
            reason="client_closed", progress=None,
        )  # fmt: skip


def test_guarantees_are_kept_and_the_rest_is_shared(settings):
    settings.LIVE_MAX_SESSIONS = 4
    reserving = TenantFactory(max_concurrent_sessions=10, guaranteed_sessions=2)
    sharing = TenantFactory(max_concurrent_sessions=10)
    # Two of the four are reserved: the other tenant gets the two that are not.
    first, second = open_session(sharing), open_session(sharing)
    assert isinstance(first, VoiceSession)
    assert isinstance(second, VoiceSession)
    assert open_session(sharing) == "platform_at_capacity"
    # The reserving tenant still reaches its guarantee, and no further.
    assert isinstance(open_session(reserving), VoiceSession)
    assert isinstance(open_session(reserving), VoiceSession)
    assert open_session(reserving) == "platform_at_capacity"
    # A slot freed by the sharing tenant is shared again: whoever asks first.
    end(first)
    assert isinstance(open_session(reserving), VoiceSession)
    assert open_session(sharing) == "platform_at_capacity"
    live = VoiceSession.unscoped.filter(status__in=VoiceSession.LIVE_STATUSES).count()
    assert live == 4


def test_an_unused_guarantee_stays_reserved_and_no_cap_means_no_limit(settings):
    reserving = TenantFactory(max_concurrent_sessions=10, guaranteed_sessions=3)
    sharing = TenantFactory(max_concurrent_sessions=10)
    settings.LIVE_MAX_SESSIONS = 3
    assert open_session(sharing) == "platform_at_capacity"  # all three are reserved
    settings.LIVE_MAX_SESSIONS = 0
    assert isinstance(open_session(sharing), VoiceSession)
    assert reserving.guaranteed_sessions == 3


def test_the_tenant_limit_still_applies_under_its_guarantee(settings):
    settings.LIVE_MAX_SESSIONS = 10
    tenant = TenantFactory(max_concurrent_sessions=1, guaranteed_sessions=1)
    assert isinstance(open_session(tenant), VoiceSession)
    assert open_session(tenant) == "tenant_session_limit"


def test_guarantees_cannot_add_up_past_the_cap(settings):
    settings.LIVE_MAX_SESSIONS = 5
    TenantFactory(max_concurrent_sessions=10, guaranteed_sessions=3)
    greedy = TenantFactory.build(slug="greedy", max_concurrent_sessions=10, guaranteed_sessions=3)
    with pytest.raises(ValidationError) as refused:
        greedy.full_clean()
    assert "at most 2 can be guaranteed" in str(refused.value)
    greedy.guaranteed_sessions = 2
    greedy.full_clean()
    over_own = TenantFactory.build(slug="own", max_concurrent_sessions=1, guaranteed_sessions=2)
    with pytest.raises(ValidationError, match="max_concurrent_sessions"):
        over_own.full_clean()


def test_racing_opens_never_overshoot_the_cap(settings):
    """Twelve threads of two tenants race for a cap of five (PostgreSQL in CI)."""
    require_postgres()
    settings.LIVE_MAX_SESSIONS = 5
    tenants = [TenantFactory(max_concurrent_sessions=20) for _ in range(2)]
    raws = []
    for i in range(12):
        tenant = tenants[i % 2]
        with tenant_scope(tenant.pk):
            agent = AgentFactory(tenant=tenant)
            raws.append((tenant, client_token_issue(tenant=tenant, agent=agent, end_user_id="u")))
    results: list[str] = []
    barrier = threading.Barrier(12)

    def race(tenant: Tenant, raw: str) -> None:
        try:
            with tenant_scope(tenant.pk):
                barrier.wait()
                try:
                    voice_session_open(raw_token=raw, origin=None, channel_name="race")
                    results.append("opened")
                except SessionRefused as refusal:
                    results.append(refusal.reason)
        finally:
            connection.close()

    threads = [threading.Thread(target=race, args=(t, issued.raw)) for t, issued in raws]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["opened"] * 5 + ["platform_at_capacity"] * 7
    assert VoiceSession.unscoped.count() == 5


async def test_a_client_over_the_cap_is_told_when_to_retry_and_keeps_its_token(
    alice, charlie, live_settings
):
    live_settings.LIVE_MAX_SESSIONS = 1
    live_settings.LIVE_BUSY_RETRY_AFTER = 7
    first = await open_client(f"token={await issue_token(await make_agent(alice.tenant))}")
    await first.until("session.started")
    raw = await issue_token(await make_agent(charlie.tenant))
    refused = await open_client(f"token={raw}")
    assert await refused.until_closed() == CloseCode.BUSY
    error = refused.of("error")[-1]
    assert error["code"] == "busy"
    assert 7 <= error["retry_after"] <= 14
    token = await database_sync_to_async(ClientToken.unscoped.get)(agent__tenant=charlie.tenant)
    assert token.uses_left == 1  # not used up: the same token works later
    await first.send(type="close")
    await first.until_closed()
    again = await open_client(f"token={raw}")
    await again.until("session.started")
    await again.send(type="close")
    await again.until_closed()


@database_sync_to_async
def make_agent(tenant: Tenant):
    return AgentFactory(tenant=tenant)


def test_a_tenant_with_its_own_gemini_key_neither_counts_nor_is_held(settings):
    settings.LIVE_MAX_SESSIONS = 1
    own_key = TenantFactory(max_concurrent_sessions=10)
    tenant_set_gemini_key(tenant=own_key, api_key="AIza-its-own-project-key")
    shared = TenantFactory(max_concurrent_sessions=10)
    # Its own project's quota: the platform's cap does not apply to it...
    assert isinstance(open_session(own_key), VoiceSession)
    assert isinstance(open_session(own_key), VoiceSession)
    # ...and its sessions leave the platform key's one slot free.
    assert isinstance(open_session(shared), VoiceSession)
    assert open_session(shared) == "platform_at_capacity"


def test_a_call_whose_client_is_away_keeps_its_slot_and_resumes(settings):
    settings.LIVE_MAX_SESSIONS = 1
    first_tenant = TenantFactory(max_concurrent_sessions=10)
    other = TenantFactory(max_concurrent_sessions=10)
    with tenant_scope(first_tenant.pk):
        agent = AgentFactory(tenant=first_tenant)
        raw = client_token_issue(tenant=first_tenant, agent=agent, end_user_id="u").raw
        grant = voice_session_open(raw_token=raw, origin=None, channel_name="a")
        VoiceSession.objects.filter(pk=grant.session.pk).update(
            client_detached_at=timezone.now(), status=VoiceSession.Status.RECONNECTING
        )
    # Its client is away (say, a server restart): the slot is still its own...
    assert open_session(other) == "platform_at_capacity"
    # ...and its resume is admitted.
    with tenant_scope(first_tenant.pk):
        resumed = voice_session_resume(
            raw_resume_token=grant.resume_token, origin=None, channel_name="b"
        )
    assert resumed.session.pk == grant.session.pk


def test_the_cap_holds_even_when_guarantees_were_set_past_it(settings):
    settings.LIVE_MAX_SESSIONS = 5
    first = TenantFactory(max_concurrent_sessions=10, guaranteed_sessions=3)
    second = TenantFactory(max_concurrent_sessions=10, guaranteed_sessions=2)
    settings.LIVE_MAX_SESSIONS = 4  # lowered later: the guarantees no longer fit
    opened = [open_session(first) for _ in range(3)] + [open_session(second) for _ in range(2)]
    assert [isinstance(o, VoiceSession) for o in opened] == [True] * 4 + [False]
    assert opened[-1] == "platform_at_capacity"


def test_a_suspended_tenant_reserves_nothing(settings):
    settings.LIVE_MAX_SESSIONS = 2
    TenantFactory(max_concurrent_sessions=10, guaranteed_sessions=2, status=Tenant.Status.SUSPENDED)
    sharing = TenantFactory(max_concurrent_sessions=10)
    assert isinstance(open_session(sharing), VoiceSession)
    assert isinstance(open_session(sharing), VoiceSession)
