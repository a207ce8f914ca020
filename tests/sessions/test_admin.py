from __future__ import annotations

import pytest
from django.utils import timezone

from sessions.models import ClientToken, TranscriptEntry, VoiceSession
from sessions.tokens import client_token_issue
from tests.helpers import logged_in
from voice_platform.tenancy.scope import tenant_scope

pytestmark = pytest.mark.django_db


def make_session(world, agent, user="someone") -> VoiceSession:
    session = VoiceSession.unscoped.create(
        tenant=world.tenant, agent=agent, end_user_id=user, status="active"
    )
    TranscriptEntry.unscoped.create(
        tenant=world.tenant, session=session, seq=1, role="user", kind="text",
        text=f"words of {user}", at=timezone.now(),
    )  # fmt: skip
    return session


def test_admin_sessions_list_and_detail_only_own_tenant(
    alice, charlie, alice_agent, charlie_agent, alice_staff
):
    mine = make_session(alice, alice_agent, "alice-user")
    theirs = make_session(charlie, charlie_agent, "charlie-user")
    client = logged_in(alice_staff)
    listing = client.get("/admin/voice_sessions/voicesession/")
    assert "alice-user" in listing.text
    assert "charlie-user" not in listing.text
    detail = client.get(f"/admin/voice_sessions/voicesession/{mine.pk}/change/")
    assert detail.status_code == 200
    assert "words of alice-user" in detail.text  # the transcript inline
    assert client.get(f"/admin/voice_sessions/voicesession/{theirs.pk}/change/").status_code == 302
    assert client.get("/admin/voice_sessions/voicesession/add/").status_code == 403


def test_admin_end_session_action_cannot_reach_other_tenant(
    alice, charlie, alice_agent, charlie_agent, alice_staff
):
    mine = make_session(alice, alice_agent)
    theirs = make_session(charlie, charlie_agent)
    logged_in(alice_staff).post(
        "/admin/voice_sessions/voicesession/",
        {"action": "end_sessions", "_selected_action": [mine.pk, theirs.pk]},
    )
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.status, mine.end_reason) == ("ended", "ended_by_admin")
    assert theirs.status == "active"


def test_admin_tokens_list_and_revoke_only_own(alice, charlie, alice_agent, charlie_agent,
                                              alice_staff):  # fmt: skip
    with tenant_scope(alice.tenant.pk):
        mine = client_token_issue(tenant=alice.tenant, agent=alice_agent, end_user_id="a-user")
    with tenant_scope(charlie.tenant.pk):
        theirs = client_token_issue(
            tenant=charlie.tenant, agent=charlie_agent, end_user_id="c-user"
        )
    client = logged_in(alice_staff)
    listing = client.get("/admin/voice_sessions/clienttoken/")
    assert "a-user" in listing.text
    assert "c-user" not in listing.text
    assert mine.raw not in listing.text
    client.post(
        "/admin/voice_sessions/clienttoken/",
        {"action": "revoke_tokens", "_selected_action": [mine.token.pk, theirs.token.pk]},
    )
    assert ClientToken.unscoped.get(pk=mine.token.pk).revoked_at is not None
    assert ClientToken.unscoped.get(pk=theirs.token.pk).revoked_at is None


def test_admin_viewer_sees_sessions_but_cannot_end_them(alice, alice_agent, alice_viewer):
    session = make_session(alice, alice_agent)
    client = logged_in(alice_viewer)
    assert client.get("/admin/voice_sessions/voicesession/").status_code == 200
    client.post(
        "/admin/voice_sessions/voicesession/",
        {"action": "end_sessions", "_selected_action": [session.pk]},
    )
    session.refresh_from_db()
    assert session.status == "active"
