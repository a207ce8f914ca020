"""Brute force: admin login lockout (django-axes), failed API-key and token attempts per address.

Every test uses fresh client addresses: the cache (the counters) outlives a test.
"""

from __future__ import annotations

import contextlib
import io
import logging
import secrets

import pytest
import redis
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.test import AsyncClient, Client
from rest_framework.test import APIClient

from sessions.routing import websocket_urlpatterns
from tests.factories import AgentFactory
from tests.sessions.conftest import Client as LiveClient
from tests.sessions.conftest import issue_token, live_settings, no_leaked_tasks  # noqa: F401 (fixtures)
from voice_platform.tenancy import attempts

AGENTS = "/api/v1/agents/"
LOGIN = "/admin/login/"


def new_address() -> str:
    return "10." + ".".join(str(secrets.randbelow(256)) for _ in range(3))


@pytest.fixture
def limit_3(settings):
    settings.AUTH_FAILURE_LIMIT = 3
    settings.AUTH_FAILURE_WINDOW = 60
    return settings


def api_client(address: str, key: str | None = None, **headers: str) -> APIClient:
    client = APIClient(REMOTE_ADDR=address, **headers)
    if key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


# --- Admin login (django-axes) --------------------------------------------------------------


@pytest.fixture
def axes_on(settings):
    settings.AXES_ENABLED = True  # off in test settings; the shipped limits are base's
    return settings


def admin_login(client: Client, username: str, password: str):  # type: ignore[no-untyped-def]
    return client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"})


def is_signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.django_db
def test_admin_login_30_wrong_passwords_lock_out_the_right_one(alice_staff, axes_on):
    client = Client(REMOTE_ADDR=new_address())
    for _ in range(30):
        assert admin_login(client, "alice-admin", "wrong").status_code in (200, 429)
    response = admin_login(client, "alice-admin", "pw")
    assert response.status_code == 429
    assert not is_signed_in(client)
    assert b"Too many failed logins" in response.content
    assert int(response["Retry-After"]) == axes_on.AXES_COOLOFF_TIME.total_seconds()


@pytest.mark.django_db(transaction=True)
async def test_admin_lockout_page_over_asgi(alice_staff, axes_on):
    # Daphne serves the admin through axes' async middleware path, not the sync one.
    client = AsyncClient(REMOTE_ADDR=new_address())
    form = {"username": "alice-admin", "next": "/admin/"}
    for _ in range(axes_on.AXES_FAILURE_LIMIT):
        await client.post(LOGIN, {**form, "password": "wrong"})
    response = await client.post(LOGIN, {**form, "password": "pw"})
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert not await (await client.asession()).ahas_key("_auth_user_id")


@pytest.mark.django_db
def test_admin_lockout_is_per_username_and_address(alice_staff, axes_on):
    attacker = Client(REMOTE_ADDR=new_address())
    for _ in range(axes_on.AXES_FAILURE_LIMIT):
        admin_login(attacker, "alice-admin", "wrong")
    assert admin_login(attacker, "alice-admin", "pw").status_code == 429
    # The real user elsewhere still signs in: the attacker cannot lock her out everywhere.
    elsewhere = Client(REMOTE_ADDR=new_address())
    assert admin_login(elsewhere, "alice-admin", "pw").status_code == 302
    assert is_signed_in(elsewhere)


@pytest.mark.django_db
def test_admin_lockout_lifted_by_axes_reset(alice_staff, axes_on):
    client = Client(REMOTE_ADDR=new_address())
    for _ in range(axes_on.AXES_FAILURE_LIMIT):
        admin_login(client, "alice-admin", "wrong")
    assert admin_login(client, "alice-admin", "pw").status_code == 429
    call_command("axes_reset", stdout=io.StringIO())
    assert admin_login(client, "alice-admin", "pw").status_code == 302
    assert is_signed_in(client)


@pytest.mark.django_db
def test_admin_access_attempts_hidden_from_tenant_staff(alice_staff, superuser, axes_on):
    # Attempts name users and addresses of every tenant: platform operators only.
    client = Client(REMOTE_ADDR=new_address())
    admin_login(client, "someone-else", "wrong")
    client.force_login(alice_staff)
    assert client.get("/admin/axes/accessattempt/").status_code == 403
    client.force_login(superuser)
    listing = client.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200
    assert b"someone-else" in listing.content


# --- REST API keys ----------------------------------------------------------------------


@pytest.mark.django_db
def test_api_key_guessing_is_429_after_the_limit_even_with_a_valid_key(alice, limit_3):
    address = new_address()
    guesses = [
        api_client(address, f"vpk_{secrets.token_hex(6)}_{secrets.token_urlsafe(8)}")
        .get(AGENTS)
        .status_code
        for _ in range(4)
    ]
    valid_from_there = api_client(address, alice.api_key).get(AGENTS)
    valid_elsewhere = api_client(new_address(), alice.api_key).get(AGENTS)
    assert guesses == [401, 401, 401, 429]
    assert valid_from_there.status_code == 429
    assert 0 < int(valid_from_there["Retry-After"]) <= 60
    assert valid_elsewhere.status_code == 200


@pytest.mark.django_db
def test_api_key_successes_neither_count_nor_reset_failures(alice, limit_3):
    address = new_address()
    good = api_client(address, alice.api_key)
    bad = api_client(address, "vpk_000000000000_nope")
    codes = [good.get(AGENTS).status_code for _ in range(5)]
    codes += [bad.get(AGENTS).status_code, bad.get(AGENTS).status_code]
    codes.append(good.get(AGENTS).status_code)  # must not wipe the two failures
    codes.append(bad.get(AGENTS).status_code)  # the third failure blocks
    codes.append(good.get(AGENTS).status_code)
    assert codes == [200] * 5 + [401, 401, 200, 401, 429]


@pytest.mark.django_db
def test_api_key_malformed_headers_count_as_failures(alice, limit_3):
    address = new_address()
    for header in ("Bearer a b", "Bearer nonsense", "Bearer vpk_000000000000_x"):
        client = APIClient(REMOTE_ADDR=address)
        client.credentials(HTTP_AUTHORIZATION=header)
        assert client.get(AGENTS).status_code == 401
    assert api_client(address, alice.api_key).get(AGENTS).status_code == 429


@pytest.mark.django_db
def test_api_key_forwarded_for_ignored_from_untrusted_peer(alice, limit_3):
    # Without TRUSTED_PROXIES, a spoofed X-Forwarded-For cannot spread guesses over addresses.
    address = new_address()
    codes = [
        api_client(address, "vpk_000000000000_nope", HTTP_X_FORWARDED_FOR=new_address())
        .get(AGENTS)
        .status_code
        for _ in range(4)
    ]
    assert codes == [401, 401, 401, 429]


@pytest.mark.django_db
def test_api_key_forwarded_for_from_trusted_proxy_counts_per_client(alice, limit_3):
    proxy = new_address()
    limit_3.TRUSTED_PROXIES = [f"{proxy}/32"]
    guesser, bystander = new_address(), new_address()
    for _ in range(3):
        # The left-most hop is what the client wrote; the proxy appended the real peer.
        api_client(
            proxy, "vpk_000000000000_nope", HTTP_X_FORWARDED_FOR=f"{bystander}, {guesser}"
        ).get(AGENTS)
    blocked = api_client(proxy, alice.api_key, HTTP_X_FORWARDED_FOR=guesser).get(AGENTS)
    other = api_client(proxy, alice.api_key, HTTP_X_FORWARDED_FOR=bystander).get(AGENTS)
    assert (blocked.status_code, other.status_code) == (429, 200)


@pytest.mark.django_db
def test_api_key_ipv6_counted_per_64(alice, limit_3):
    net = f"2001:db8:{secrets.randbelow(65536):x}:{secrets.randbelow(65536):x}"
    for host in range(3):
        api_client(f"{net}::{host + 1}", "vpk_000000000000_nope").get(AGENTS)
    assert api_client(f"{net}::ffff", alice.api_key).get(AGENTS).status_code == 429


class _DownCache:
    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
            raise redis.exceptions.ConnectionError(
                "Error 111 connecting to 127.0.0.1:6379. Connection refused."
            )

        return fail


@pytest.fixture
def cache_down(monkeypatch, caplog):
    monkeypatch.setattr(attempts, "cache", _DownCache())
    monkeypatch.setattr(attempts, "_last_warning", 0.0)
    caplog.set_level(logging.WARNING, logger="voice_platform.tenancy.attempts")
    return caplog


@pytest.mark.django_db
def test_api_key_cache_down_fails_open_with_a_warning(alice, settings, cache_down):
    settings.AUTH_FAILURE_LIMIT = 1
    address = new_address()
    bad = [api_client(address, "vpk_000000000000_nope").get(AGENTS).status_code for _ in range(3)]
    good = api_client(address, alice.api_key).get(AGENTS).status_code
    assert (bad, good) == ([401, 401, 401], 200)
    warnings = [r for r in cache_down.records if "not counted" in r.getMessage()]
    assert len(warnings) == 1  # once per minute, not once per request


# --- WebSocket client and resume tokens -------------------------------------------------


def live_app_from(address: str):  # type: ignore[no-untyped-def]
    """The live route as seen from ``address`` (the communicator sets no ``client``)."""
    app = URLRouter(websocket_urlpatterns)

    async def from_address(scope, receive, send):  # type: ignore[no-untyped-def]
        return await app({**scope, "client": (address, 40000)}, receive, send)

    return from_address


async def live_close_code(address: str, query: str) -> int:
    comm = WebsocketCommunicator(live_app_from(address), f"/ws/v1/live?{query}")
    connected, _ = await comm.connect(timeout=10)
    assert connected
    client = LiveClient(comm)
    code = await client.until_closed(timeout=10)
    # Let the consumer finish now, not at the event loop's close (where a channel layer's
    # pending receive can hold the test's teardown).
    with contextlib.suppress(Exception):
        await comm.disconnect(timeout=5)
    return code


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_settings")  # the emulator: the session from elsewhere opens
async def test_ws_token_guessing_refused_with_4030_even_with_a_valid_token(alice, limit_3):
    agent = await database_sync_to_async(AgentFactory)(tenant=alice.tenant)
    address = new_address()
    codes = [await live_close_code(address, f"token=ct_{secrets.token_urlsafe(8)}")]
    codes.append(await live_close_code(address, f"resume=rt_{secrets.token_urlsafe(8)}"))
    codes.append(await live_close_code(address, f"token=ct_{secrets.token_urlsafe(8)}"))
    codes.append(await live_close_code(address, f"token={await issue_token(agent)}"))
    assert codes == [4001, 4001, 4001, 4030]
    # The same kind of token from another address opens its session.
    comm = WebsocketCommunicator(
        live_app_from(new_address()), f"/ws/v1/live?token={await issue_token(agent)}"
    )
    assert (await comm.connect(timeout=10))[0]
    elsewhere = LiveClient(comm)
    await elsewhere.until("session.started")
    await elsewhere.send(type="close")
    assert await elsewhere.until_closed() == 1000


@pytest.mark.django_db(transaction=True)
async def test_ws_cache_down_fails_open(alice, settings, cache_down):
    settings.AUTH_FAILURE_LIMIT = 1
    address = new_address()
    codes = [await live_close_code(address, "token=ct_nope") for _ in range(3)]
    assert codes == [4001, 4001, 4001]
    assert any("not counted" in r.getMessage() for r in cache_down.records)
