"""A dependency outage answers 503 with its reason, never a 500.

When PostgreSQL or Redis is unreachable, whatever a request needed from it cannot be done
now and can be done again in a moment: that is a 503 with ``Retry-After``, and the body
says which dependency is missing so an operator sees the cause in the client's log. The
middleware catches what views (DRF's included: their handler re-raises what it does not
know) let through; nothing already stored is touched by a request that failed this way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_DATABASE_DOWN = (OperationalError, InterfaceError)


def outage_of(exc: BaseException) -> str | None:
    """``"redis"`` or ``"database"`` when ``exc`` means that dependency is unreachable."""
    if isinstance(exc, _REDIS_DOWN):
        return "redis"
    if isinstance(exc, _DATABASE_DOWN):
        return "database"
    return None


def unavailable_response(dependency: str, *, json: bool = True) -> HttpResponse:
    detail = f"Service temporarily unavailable: the {dependency} cannot be reached. Try again."
    response: HttpResponse
    if json:
        response = JsonResponse({"detail": detail, "code": f"{dependency}_unavailable"}, status=503)
    else:
        response = HttpResponse(detail, status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class OutageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        dependency = outage_of(exception)
        if dependency is None:
            return None
        log.warning(
            "%s %s: %s unreachable: %s", request.method, request.path, dependency, exception
        )
        return unavailable_response(dependency, json=request.path.startswith("/api/"))
