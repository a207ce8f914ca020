"""The page a locked-out admin login gets (django-axes' ``AXES_LOCKOUT_CALLABLE``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

LOCKED_OUT_STATUS = 429


def admin_lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """429 with ``Retry-After``: the full cool-off, since every refused try restarts it.

    ``original_response`` and ``credentials`` are unused: axes' async middleware passes them
    in a different order than its sync one.
    """
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    response = render(
        request,
        "tenancy/lockout.html",
        {"cool_off_minutes": max(1, round(seconds / 60)), "site_header": "Voice Platform"},
        status=LOCKED_OUT_STATUS,
    )
    response["Retry-After"] = str(seconds)
    return response
