"""The client protocol's JSON Schema (sessions/protocol.schema.json), as the server applies it.

The committed schema is the one definition of the JSON text frames: the server checks each
client message with it here, and the tests check every frame they send and receive with
the same file. A message is checked against its own type's definition (picked by its
``type``), not the whole ``clientMessage`` union: the error can then name the field, and
one small object check costs a few microseconds. Binary (audio) frames never come here.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

SCHEMA_PATH = Path(__file__).resolve().parent / "protocol.schema.json"

# How a schema type reads in an error message (no value is echoed: it may be huge).
_TYPE_WORDS = {
    "string": "a string",
    "boolean": "a boolean",
    "integer": "an integer",
    "number": "a number",
    "object": "a JSON object",
}


@cache
def protocol_schema() -> dict[str, Any]:
    """The parsed schema file (read once per process)."""
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


def definitions_of(union: str) -> dict[str, str]:
    """``type`` value -> ``$defs`` name, for the members of ``clientMessage`` or
    ``serverEvent``."""
    defs = protocol_schema()["$defs"]
    found: dict[str, str] = {}
    for member in defs[union]["oneOf"]:
        name = member["$ref"].removeprefix("#/$defs/")
        found[defs[name]["properties"]["type"]["const"]] = name
    return found


@cache
def _validator(definition: str) -> Draft202012Validator:
    # The definition itself as the root (a $ref hop less per message: about 5-10 us of the
    # 10-20 us a check costs), carrying every $defs entry so its own $refs resolve.
    defs = protocol_schema()["$defs"]
    return Draft202012Validator({**defs[definition], "$defs": defs})


@cache
def client_validators() -> dict[str, Draft202012Validator]:
    """``type`` -> the compiled check of that client message (built once per process)."""
    return {kind: _validator(name) for kind, name in definitions_of("clientMessage").items()}


def client_message_problem(data: Any) -> str | None:
    """Why a parsed client text frame is not a protocol message, or None."""
    if not isinstance(data, dict):
        return "a message must be a JSON object"
    kind = data.get("type")
    if not isinstance(kind, str):
        return "missing or non-string 'type'"
    validator = client_validators().get(kind)
    if validator is None:
        return f"unknown message type {kind[:40]!r}"
    if validator.is_valid(data):  # the common case: no error objects built
        return None
    return _describe(next(iter(validator.iter_errors(data))))


def _describe(error: ValidationError) -> str:
    if error.validator == "required":
        present: dict[str, Any] = error.instance if isinstance(error.instance, dict) else {}
        required: list[str] = (
            list(error.schema.get("required", [])) if isinstance(error.schema, dict) else []
        )
        missing = [name for name in required if name not in present]
        return f"missing {missing[0]!r}" if missing else "a required field is missing"
    field = next((str(part) for part in error.absolute_path), "message")
    expected = error.validator_value
    if error.validator == "type" and isinstance(expected, list):
        return f"{field!r} must be a JSON scalar"
    if error.validator == "type":
        return f"{field!r} must be {_TYPE_WORDS.get(str(expected), expected)}"
    if error.validator == "minLength":
        return f"{field!r} is empty"
    return f"{field!r} is not valid"


def event_problems(event: Any, *, union: str = "serverEvent") -> list[str]:
    """Every way ``event`` departs from the schema (for the tests and the clients)."""
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return ["not a JSON object with a string 'type'"]
    name = definitions_of(union).get(event["type"])
    if name is None:
        return [f"type {event['type']!r} is not in {union}"]
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in _validator(name).iter_errors(event)
    ]
