"""Field validators whose allowed values come from settings, not from migrations."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

_HOST_RE = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*)$")


def validate_live_model(value: str) -> None:
    if value not in settings.LIVE_MODELS:
        raise ValidationError(
            "Unknown model %(value)s. Allowed: %(allowed)s.",
            code="unknown_model",
            params={"value": value, "allowed": ", ".join(settings.LIVE_MODELS)},
        )


def validate_voice(value: str) -> None:
    if value and value not in settings.LIVE_VOICES:
        raise ValidationError(
            "Unknown voice %(value)s. Allowed: %(allowed)s.",
            code="unknown_voice",
            params={"value": value, "allowed": ", ".join(settings.LIVE_VOICES)},
        )


def validate_origin(value: str) -> None:
    """An origin is ``scheme://host[:port]``: no path, query, fragment or credentials."""
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = -1
    ok = (
        parts.scheme in {"http", "https"}
        and bool(parts.hostname)
        and _HOST_RE.match(parts.netloc.rsplit(":", 1)[0] if port else parts.netloc) is not None
        and parts.path == ""
        and not parts.query
        and not parts.fragment
        and parts.username is None
        and port != -1
    )
    if not ok:
        raise ValidationError(
            "%(value)s is not an origin (expected scheme://host[:port], e.g. "
            "https://app.example.com).",
            code="invalid_origin",
            params={"value": value},
        )


def validate_origin_list(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError("Allowed origins must be a list of strings.", code="invalid")
    errors = []
    for origin in value:
        try:
            validate_origin(origin)
        except ValidationError as exc:
            errors.extend(exc.messages)
    if errors:
        raise ValidationError(errors)
