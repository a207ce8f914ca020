"""The admin site's own views: the ``/admin/r/<content type>/<id>/`` "view on site" shortcut.

Django's shortcut reads the model's unscoped base manager: another tenant's id answered
differently from a missing one (an existence oracle), and a malformed UUID was a 500.
"""

from __future__ import annotations

import uuid

import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import Client

from sessions.models import VoiceSession
from tests.factories import VoiceSessionFactory
from tests.helpers import logged_in

pytestmark = pytest.mark.django_db


def _page(response: object, object_id: str) -> str:
    """The answer with the requested id blanked out (the one thing allowed to differ)."""
    body = response.content.decode()  # type: ignore[attr-defined]
    return body.replace(object_id, "<id>")


def _shortcut(client: Client, content_type_id: object, object_id: str) -> tuple[int, str]:
    response = client.get(f"/admin/r/{content_type_id}/{object_id}/")
    return response.status_code, _page(response, object_id)


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
def test_admin_shortcut_answers_foreign_missing_and_malformed_ids_alike(
    settings, alice, charlie, alice_staff, debug
):
    settings.DEBUG = debug  # the DEBUG 404 page shows the reason: it must not tell them apart
    foreign = VoiceSessionFactory(tenant=charlie.tenant)
    ct = ContentType.objects.get_for_model(VoiceSession).pk
    client = logged_in(alice_staff)
    answers = {
        "foreign": _shortcut(client, ct, str(foreign.pk)),
        "missing": _shortcut(client, ct, str(uuid.uuid4())),
        "malformed": _shortcut(client, ct, "not-a-uuid"),
        "huge": _shortcut(client, ct, "9" * 40),
    }
    assert {name: status for name, (status, _) in answers.items()} == dict.fromkeys(answers, 404)
    assert len({page for _, page in answers.values()}) == 1, answers


@pytest.mark.parametrize(
    ("content_type_id", "object_id"),
    [
        ("not-a-number", "1"),
        ("9" * 30, "1"),
        ("-1", "1"),
        ("{user}", "abc"),  # the User model is not a tenant member's to see
        ("{user}", "{staff}"),
        ("{tenant}", "{charlie}"),  # another tenant's row of the Tenant model itself
        ("{tenant}", "x%00y"),
    ],
)
def test_admin_shortcut_bad_or_invisible_target_is_404(
    alice, charlie, alice_staff, content_type_id, object_id
):
    from django.contrib.auth import get_user_model

    from voice_platform.tenancy.models import Tenant

    names = {
        "user": ContentType.objects.get_for_model(get_user_model()).pk,
        "tenant": ContentType.objects.get_for_model(Tenant).pk,
        "staff": alice_staff.pk,
        "charlie": charlie.tenant.pk,
    }
    path = f"/admin/r/{content_type_id.format(**names)}/{object_id.format(**names)}/"
    assert logged_in(alice_staff).get(path).status_code == 404


def test_admin_shortcut_redirects_to_a_visible_objects_page(
    monkeypatch, alice, charlie, alice_staff, superuser
):
    # No model of ours has a public page yet; give one a URL to see the shortcut still works
    # for what the user may see (and only for that).
    monkeypatch.setattr(
        VoiceSession, "get_absolute_url", lambda self: f"/sessions/{self.pk}/", raising=False
    )
    own = VoiceSessionFactory(tenant=alice.tenant)
    foreign = VoiceSessionFactory(tenant=charlie.tenant)
    ct = ContentType.objects.get_for_model(VoiceSession).pk
    response = logged_in(alice_staff).get(f"/admin/r/{ct}/{own.pk}/")
    assert response.status_code == 302
    assert response["Location"].endswith(f"/sessions/{own.pk}/")
    assert logged_in(alice_staff).get(f"/admin/r/{ct}/{foreign.pk}/").status_code == 404
    # Platform operators see every tenant, so the shortcut follows them there too.
    response = logged_in(superuser).get(f"/admin/r/{ct}/{foreign.pk}/")
    assert response.status_code == 302
    assert response["Location"].endswith(f"/sessions/{foreign.pk}/")


def test_admin_shortcut_needs_a_signed_in_member(alice):
    own = VoiceSessionFactory(tenant=alice.tenant)
    ct = ContentType.objects.get_for_model(VoiceSession).pk
    response = Client().get(f"/admin/r/{ct}/{own.pk}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
