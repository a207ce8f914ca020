"""sessions/protocol.schema.json and docs/protocol.md against the code that speaks the protocol:
the schema is valid, covers every event the code can emit, the document gives every close
code with its reason text, its examples follow the schema, and it points nowhere outside
the repository."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

import sessions
from sessions.close_codes import CLOSE_REASONS, FORBIDDEN_REASONS, CloseCode, close_reason
from sessions.protocol_schema import SCHEMA_PATH, definitions_of, protocol_schema
from tests.sessions.conftest import assert_protocol

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL_MD = ROOT / "docs" / "protocol.md"
SESSIONS = Path(sessions.__file__).resolve().parent


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text())) for path in sorted(SESSIONS.rglob("*.py"))]


def _const(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _callee(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _type_of(literal: ast.Dict) -> str | None:
    for key, value in zip(literal.keys, literal.values, strict=True):
        if _const(key) == "type":
            return _const(value)
    return None


def emitted_event_types() -> set[str]:
    """Every ``type`` the server can send, read from the code: the dicts client_events.py
    builds, its ``simple(kind)`` calls anywhere in sessions/, and event dicts handed straight
    to an ``emit`` (the tool gateway's)."""
    found: set[str] = set()
    for path, tree in _modules():
        for node in ast.walk(tree):
            if path.name == "client_events.py" and isinstance(node, ast.Dict):
                kind = _type_of(node)
                if kind is not None:
                    found.add(kind)
            if not isinstance(node, ast.Call):
                continue
            callee = _callee(node)
            if callee == "simple" and node.args and _const(node.args[0]):
                found.add(str(_const(node.args[0])))
            if callee == "emit":
                for arg in node.args:
                    if isinstance(arg, ast.Dict) and _type_of(arg) is not None:
                        found.add(str(_type_of(arg)))
    return found


def literal_codes(builder: str) -> set[str]:
    """The literal first arguments of ``client_events.<builder>(...)`` calls in sessions/."""
    return {
        str(_const(node.args[0]))
        for _, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == builder
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "client_events"
        and node.args
        and _const(node.args[0]) is not None
    }


def test_the_schema_is_valid_json_schema_2020_12():
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    for union in ("clientMessage", "serverEvent"):
        assert schema["$defs"][union]["oneOf"], union


def test_the_scan_finds_events_at_all():
    """A scan that found nothing would make the next test pass for nothing."""
    found = emitted_event_types()
    assert {"session.started", "session.ended", "error", "pong", "tool.finished"} <= found


def test_every_event_the_code_can_emit_has_a_definition_and_none_is_stale():
    emitted = emitted_event_types()
    defined = set(definitions_of("serverEvent"))
    assert emitted - defined == set(), "events the code sends that the schema lacks"
    assert defined - emitted == set(), "schema definitions of events nothing sends"
    defs = protocol_schema()["$defs"]
    for kind, name in definitions_of("serverEvent").items():
        assert name == f"server.{kind}"
        assert defs[name]["additionalProperties"] is False, f"{name}: every field listed"


def test_every_literal_error_and_warning_code_is_in_the_schema():
    defs = protocol_schema()["$defs"]
    assert literal_codes("error") <= set(defs["server.error"]["properties"]["code"]["enum"])
    assert literal_codes("warning") <= set(defs["server.warning"]["properties"]["code"]["enum"])
    assert literal_codes("error"), "the scan found no error code at all"


def test_the_client_messages_are_the_ones_the_server_parses():
    from sessions.client_messages import BadMessage, parse_client_message

    for kind in definitions_of("clientMessage"):
        message = {"type": kind, "text": "hello"} if kind == "text" else {"type": kind}
        assert parse_client_message(json.dumps(message)).type == kind
    with pytest.raises(BadMessage, match="unknown message type"):
        parse_client_message('{"type": "session.started"}')


def _documented_rows() -> dict[int, str]:
    rows: dict[int, str] = {}
    for line in PROTOCOL_MD.read_text().splitlines():
        match = re.match(r"\|\s*(\d{4})\s*\|(.*)", line)
        if match:
            rows[int(match.group(1))] = rows.get(int(match.group(1)), "") + match.group(2)
    return rows


@pytest.mark.parametrize("code", list(CloseCode))
def test_every_close_code_is_documented_with_its_reason_text(code):
    rows = _documented_rows()
    assert code.value in rows, f"close code {code.value} has no row in docs/protocol.md"
    assert f'`"{CLOSE_REASONS[code]}"`' in rows[code.value]
    assert len(close_reason(code).encode()) <= 123  # what a close frame can carry


@pytest.mark.parametrize("refusal", sorted(FORBIDDEN_REASONS))
def test_every_forbidden_reason_text_is_documented(refusal):
    assert f'`"{FORBIDDEN_REASONS[refusal]}"`' in _documented_rows()[CloseCode.FORBIDDEN]


def test_the_examples_in_the_document_follow_the_schema():
    """Example lines are ``> {json}`` (client to server) and ``< {json}`` (server to
    client) inside code blocks."""
    checked = 0
    for line in PROTOCOL_MD.read_text().splitlines():
        match = re.match(r"([<>]) (\{.*\})\s*$", line)
        if match:
            union = "clientMessage" if match.group(1) == ">" else "serverEvent"
            assert_protocol(json.loads(match.group(2)), union)
            checked += 1
    assert checked >= 20, "the worked examples are missing"


def test_the_document_points_nowhere_outside_the_repository():
    for path in (PROTOCOL_MD, SCHEMA_PATH):
        text = path.read_text()
        assert not re.search(r"shared[/]docs", text), path
        assert not re.search(r"(?<![\w.:/])/(work|home|tmp|srv|opt|mnt)/", text), path
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            assert not re.match(r"[a-z]+://", target), f"{path.name} links out: {target}"
            assert (path.parent / target).resolve().is_relative_to(ROOT), target
            assert (path.parent / target).exists(), f"{path.name}: broken link {target}"


def test_the_server_refuses_what_the_schema_refuses_field_by_field():
    """The server's check is the schema's: a wrong type in any field of any client message
    the schema defines is a bad_message, with the field named."""
    from sessions.client_messages import BadMessage, parse_client_message

    defs = protocol_schema()["$defs"]
    tried = 0
    for kind, name in definitions_of("clientMessage").items():
        for field in defs[name]["properties"]:
            if field == "type":
                continue
            message = {"type": kind, "text": "hello", field: {"an": "object"}}
            with pytest.raises(BadMessage, match=repr(field)):
                parse_client_message(json.dumps(message))
            tried += 1
    assert tried >= 3  # text, turn_complete, id


@pytest.mark.parametrize(
    ("frame", "union"),
    [
        ({"type": "turn_complete", "undocumented": 1}, "serverEvent"),
        ({"type": "error", "code": "busy", "message": "no retry_after"}, "serverEvent"),
        ({"type": "session.ended", "reason": "made_up"}, "serverEvent"),
        ({"type": "no.such.event"}, "serverEvent"),
        ({"type": "text", "text": 5}, "clientMessage"),
        ({"type": "ping", "id": [1]}, "clientMessage"),
    ],
)
def test_the_test_clients_check_fails_on_a_frame_off_the_schema(frame, union):
    with pytest.raises(pytest.fail.Exception, match="off the protocol schema"):
        assert_protocol(frame, union)


def test_the_test_clients_check_passes_a_frame_on_the_schema():
    assert_protocol({"type": "error", "code": "busy", "message": "m", "retry_after": 10},
                    "serverEvent")  # fmt: skip
    assert_protocol({"type": "text", "text": "hi", "turn_complete": False}, "clientMessage")
