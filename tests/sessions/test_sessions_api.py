from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from sessions.models import TranscriptEntry, VoiceSession

pytestmark = pytest.mark.django_db


def make_session(world, agent, **fields) -> VoiceSession:
    session = VoiceSession.unscoped.create(
        tenant=world.tenant, agent=agent, end_user_id=fields.pop("user", "u1"), **fields
    )
    for seq, (role, text) in enumerate([("user", "hi"), ("model", "You said: hi")], start=1):
        TranscriptEntry.unscoped.create(
            tenant=world.tenant, session=session, seq=seq, role=role, kind="text", text=text,
            at=timezone.now(),
        )  # fmt: skip
    return session


def test_sessions_list_only_own_with_filters(alice, charlie, alice_agent, charlie_agent):
    mine = make_session(alice, alice_agent, status="ended", user="u1")
    make_session(alice, alice_agent, status="active", user="u2")
    make_session(charlie, charlie_agent, status="ended")
    body = alice.client.get("/api/v1/sessions/").json()
    assert body["count"] == 2
    filtered = alice.client.get("/api/v1/sessions/?status=ended&user_id=u1").json()
    assert [s["id"] for s in filtered["results"]] == [str(mine.pk)]
    by_agent = alice.client.get(f"/api/v1/sessions/?agent={alice_agent.pk}").json()
    assert by_agent["count"] == 2


def test_session_retrieve_transcript_and_end_other_tenant_are_404(alice, charlie, charlie_agent):
    theirs = make_session(charlie, charlie_agent, status="active")
    for path in ("", "transcript/"):
        assert alice.client.get(f"/api/v1/sessions/{theirs.pk}/{path}").status_code == 404
    assert alice.client.post(f"/api/v1/sessions/{theirs.pk}/end/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "active"
    assert alice.client.get(f"/api/v1/sessions/{uuid.uuid4()}/").status_code == 404


def test_session_retrieve_and_transcript(alice, alice_agent):
    session = make_session(alice, alice_agent, status="ended", turns=1, first_response_ms=[10, 30])
    body = alice.client.get(f"/api/v1/sessions/{session.pk}/").json()
    assert body["turns"] == 1
    assert body["first_response_ms_p50"] == 10
    assert body["first_response_ms_p95"] == 30
    assert "resume_token_hash" not in body
    assert "resumption_handle" not in body
    transcript = alice.client.get(f"/api/v1/sessions/{session.pk}/transcript/").json()
    assert [(e["seq"], e["role"], e["text"]) for e in transcript["results"]] == [
        (1, "user", "hi"), (2, "model", "You said: hi")
    ]  # fmt: skip


def test_session_end_marks_live_session_ended(alice, alice_agent):
    session = make_session(alice, alice_agent, status="active")
    response = alice.client.post(f"/api/v1/sessions/{session.pk}/end/")
    assert response.status_code == 200
    session.refresh_from_db()
    assert (session.status, session.end_reason) == ("ended", "ended_by_api")
    again = alice.client.post(f"/api/v1/sessions/{session.pk}/end/")
    assert again.status_code == 200  # idempotent: an ended session stays as it ended
    session.refresh_from_db()
    assert session.end_reason == "ended_by_api"
