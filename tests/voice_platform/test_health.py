from __future__ import annotations

import pytest
from django.test import Client, override_settings

from conftest import require_redis

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_dependencies():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_ok_with_configured_services():
    response = Client().get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["checks"]["database"] == "ok"


def test_readyz_checks_real_redis_when_configured():
    require_redis()
    body = Client().get("/readyz").json()
    assert body["checks"]["redis"] == "ok"


def test_readyz_503_names_failed_redis():
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"].startswith("error")
    assert body["checks"]["database"] == "ok"


def test_readyz_503_names_failed_database(monkeypatch):
    from voice_platform import health

    def broken_cursor():
        raise OSError("db down")

    monkeypatch.setattr(health.connection, "cursor", broken_cursor)
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "error: OSError"


def test_a_draining_process_is_alive_but_not_ready(monkeypatch):
    from sessions import shutdown

    monkeypatch.setattr(shutdown, "_draining", True)  # what SIGTERM sets (sessions/shutdown.py)
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "draining"
    assert Client().get("/healthz").status_code == 200  # liveness: not to be killed meanwhile
    monkeypatch.setattr(shutdown, "_draining", False)
    assert Client().get("/readyz").status_code == 200


@override_settings(ALLOWED_HOSTS=["voice.example.com"], SECURE_SSL_REDIRECT=True)
@pytest.mark.django_db
def test_probes_answer_the_balancer_whatever_the_public_host_and_https_rules():
    """As docs/deployment.md sets production up: the public name only, HTTPS enforced.
    The balancer's check (Host: localhost, plain HTTP) and a container's own healthcheck
    (Host: 127.0.0.1:8000) still get their answers; everything else keeps the rules."""
    client = Client()
    assert client.get("/readyz", HTTP_HOST="localhost").status_code == 200
    assert client.get("/healthz", HTTP_HOST="127.0.0.1:8000").status_code == 200
    assert client.post("/healthz", HTTP_HOST="localhost").status_code == 405
    assert client.get("/api/v1/agents/", HTTP_HOST="localhost").status_code == 400
    public = client.get("/api/v1/agents/", HTTP_HOST="voice.example.com")
    assert public.status_code == 301  # to HTTPS
