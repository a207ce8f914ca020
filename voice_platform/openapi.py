"""The OpenAPI schema documents every answer an operation can give, in one place.

drf-spectacular documents the success answers of each view. The error answers are the
same for every operation (they come from the API-key door, the throttle, the JSON parser,
the outage middleware and the exception handler in ``voice_platform.api_errors``), so this
postprocessing hook adds them to all operations rather than each view repeating them. It
also states what Django's ``<int:...>`` path converter accepts (ASCII digits, no sign).
"""

from __future__ import annotations

from typing import Any

ERROR = "Error"
FIELD_ERRORS = "FieldErrors"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error that is not about one field.",
    "properties": {
        "detail": {"type": "string", "description": "What went wrong, for a person."},
        "code": {
            "type": "string",
            "description": "What went wrong, for a program: e.g. parse_error, too_deep, "
            "invalid_text, too_large, not_authenticated, authentication_failed, "
            "permission_denied, not_found, throttled, redis_unavailable, "
            "database_unavailable.",
        },
    },
    "required": ["detail", "code"],
}

FIELD_ERRORS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Field errors: each invalid field (or non_field_errors) with its "
    "messages; a nested field's errors are nested the same way.",
    "additionalProperties": {
        "anyOf": [
            {"type": "array", "items": {}},
            {"type": "object"},
            {"type": "string"},
        ]
    },
    "minProperties": 1,
}

RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}


def _error(description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def error_responses(*, has_body: bool) -> dict[str, dict[str, Any]]:
    responses = {
        "400": _error(
            "Invalid input: field errors, or a body that is not acceptable JSON "
            "(parse_error, too_deep, invalid_text).",
            {"anyOf": [_ref(FIELD_ERRORS), _ref(ERROR)]},
        ),
        "401": _error("No API key, or an unknown, malformed or revoked one.", _ref(ERROR)),
        "403": _error("The key's tenant is suspended.", _ref(ERROR)),
        "404": _error(
            "No such object (or another tenant's: the same answer), or a page past the end.",
            _ref(ERROR),
        ),
        "429": _error("Over the key's rate.", _ref(ERROR), headers=RETRY_AFTER),
        "503": _error(
            "PostgreSQL or Redis is unreachable (redis_unavailable, database_unavailable).",
            _ref(ERROR),
            headers=RETRY_AFTER,
        ),
    }
    if has_body:
        responses["413"] = _error("The request body is over the size limit.", _ref(ERROR))
    return responses


def document_error_responses(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook (``SPECTACULAR_SETTINGS``)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR] = ERROR_SCHEMA
    schemas[FIELD_ERRORS] = FIELD_ERRORS_SCHEMA
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, response in error_responses(has_body="requestBody" in operation).items():
                operation["responses"].setdefault(status, response)
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if parameter.get("in") == "path" and schema.get("type") == "integer":
                    schema.setdefault("minimum", 0)  # what <int:...> matches; 0 is a 404
    return result
