"""Liveness (/healthz) and readiness (/readyz) probes.

A process draining on SIGTERM (sessions/shutdown.py) is alive but not ready: /readyz answers
503 ``draining`` so the balancer sends new sessions and resumes elsewhere, while /healthz
stays 200 until it exits (an orchestrator must not kill it mid-hand-over)."""

from __future__ import annotations

from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from sessions.shutdown import draining


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver error means "not ready"
        return f"error: {type(exc).__name__}"
    return "ok"


def check_redis() -> str:
    try:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1
        )
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any client error means "not ready"
        return f"error: {type(exc).__name__}"
    return "ok"


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    if draining():  # no checks: a stopping process leaves the balancer whatever else holds
        return JsonResponse({"status": "draining"}, status=503)
    checks = {"database": check_database()}
    if settings.REDIS_URL:
        checks["redis"] = check_redis()
    ready = all(v == "ok" for v in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


class ProbeMiddleware:
    """Answers /healthz and /readyz before the rest of the stack.

    Probes come from the balancer or the orchestrator, addressed by IP or ``localhost`` over
    plain HTTP. ``ALLOWED_HOSTS`` (checked by CommonMiddleware on every request) and
    ``SECURE_SSL_REDIRECT`` are about clients: applied to probes, a deployment set up as
    docs/deployment.md says (its public name in ``ALLOWED_HOSTS``, HTTPS enforced) would
    fail every health check, and the balancer would take every process out."""

    PROBES = {"/healthz": healthz, "/readyz": readyz}

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = self.PROBES.get(request.path_info)
        if probe is None:
            return self.get_response(request)
        return probe(request)
