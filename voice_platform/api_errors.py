"""One exception handler, two error body shapes (docs/api.md, and the OpenAPI schema).

- Field errors (400): ``{"<field>": ["message", ...], ...}``; model validation errors
  become DRF field errors, errors of no one field go under ``non_field_errors``.
- Every other error: ``{"detail": "message", "code": "machine_code"}`` (the same shape as
  the 503 of ``voice_platform.outages``).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            detail: Any = {
                (api_settings.NON_FIELD_ERRORS_KEY if key == NON_FIELD_ERRORS else key): value
                for key, value in exc.message_dict.items()
            }
        else:
            detail = {api_settings.NON_FIELD_ERRORS_KEY: exc.messages}
        exc = exceptions.ValidationError(detail)
    response = drf_exception_handler(exc, context)
    if (
        response is not None
        and isinstance(response.data, dict)
        and set(response.data) == {"detail"}
    ):
        code = getattr(response.data["detail"], "code", None) or "error"
        response.data = {"detail": str(response.data["detail"]), "code": str(code)}
    return response


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: a URL under ``/api/`` that matches no route (``/agents/-1/``, a
    non-ASCII id) answers the API's JSON 404 like any other missing object."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return page_not_found(request, exception)
