"""Schema derivation, Gemini declarations and registration rules."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

import pydantic
import pytest
from django.core.exceptions import ImproperlyConfigured
from google.genai import types

from tools.registry import (
    ToolArgumentError,
    ToolContext,
    get_tool,
    json_schema_to_gemini,
    parse_rate_limit,
    registry,
    tool,
    unregister,
)


@pytest.fixture
def scratch_tools():
    """Tools registered by a test are removed afterwards."""
    before = set(registry())
    yield
    for name in set(registry()) - before:
        unregister(name)


class Color(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Address(pydantic.BaseModel):
    city: str = pydantic.Field(description="City name.")
    zip_code: str | None = None


class OrderArgs(pydantic.BaseModel):
    """Arguments of a test tool using a nested model, an enum and a list."""

    order_id: str = pydantic.Field(description="The order's id.")
    quantity: int = pydantic.Field(ge=1, le=10)
    color: Color
    tags: list[str] = []
    address: Address | None = None


def test_registry_hint_derivation_builds_schema_with_required_and_defaults(scratch_tools):
    @tool(name="t_hints", description="Hints.")
    def fn(
        ctx: ToolContext,
        city: Annotated[str, pydantic.Field(description="Where.")],
        days: int = 3,
        unit: Literal["C", "F"] = "C",
        precise: bool = False,
        ratio: float = 0.5,
    ) -> dict[str, Any]:
        return {}

    spec = get_tool("t_hints")
    schema = spec.parameters_schema()
    assert schema["required"] == ["city"]
    assert schema["properties"]["city"]["description"] == "Where."
    assert schema["properties"]["days"]["type"] == "integer"
    declaration = spec.function_declaration()
    assert isinstance(declaration, types.FunctionDeclaration)
    params = declaration.parameters
    assert params.type == types.Type.OBJECT
    assert params.required == ["city"]
    props = params.properties
    assert props["city"].type == types.Type.STRING
    assert props["city"].description == "Where."
    assert props["days"].type == types.Type.INTEGER
    assert props["unit"].enum == ["C", "F"]
    assert props["precise"].type == types.Type.BOOLEAN
    assert props["ratio"].type == types.Type.NUMBER
    assert declaration.behavior is None


def test_registry_hint_derivation_rejects_unknown_and_wrong_arguments(scratch_tools):
    @tool(name="t_strict", description="Strict.")
    def fn(ctx: ToolContext, count: int) -> dict[str, Any]:
        return {}

    spec = get_tool("t_strict")
    assert spec.validate_args({"count": "7"}).count == 7  # pydantic's lax coercion
    with pytest.raises(ToolArgumentError, match="unexpected argument 'other'"):
        spec.validate_args({"count": 1, "other": 2})
    with pytest.raises(ToolArgumentError, match="missing argument 'count'"):
        spec.validate_args({})
    with pytest.raises(ToolArgumentError, match="invalid argument 'count'"):
        spec.validate_args({"count": "many"})


def test_registry_pydantic_model_resolves_refs_enums_arrays(scratch_tools):
    @tool(name="t_model", description="Model.", params=OrderArgs)
    def fn(ctx: ToolContext, **kwargs: Any) -> dict[str, Any]:
        return {}

    declaration = get_tool("t_model").function_declaration()
    params = declaration.parameters
    assert params.description == OrderArgs.__doc__
    assert set(params.required) == {"order_id", "quantity", "color"}
    props = params.properties
    assert props["color"].enum == ["red", "blue"]  # $ref to $defs resolved
    assert props["color"].type == types.Type.STRING
    assert props["quantity"].minimum == 1
    assert props["quantity"].maximum == 10
    assert props["tags"].type == types.Type.ARRAY
    assert props["tags"].items.type == types.Type.STRING
    address = props["address"]  # Optional[Address]: nullable object with its own fields
    assert address.nullable is True
    assert address.properties["city"].description == "City name."
    assert address.required == ["city"]


def test_registry_non_blocking_declares_behavior_and_default_scheduling(scratch_tools):
    @tool(name="t_bg", description="Background.", behavior="NON_BLOCKING")
    def fn(ctx: ToolContext, job: str) -> dict[str, Any]:
        return {}

    spec = get_tool("t_bg")
    assert spec.function_declaration().behavior == types.Behavior.NON_BLOCKING
    assert spec.scheduling == "WHEN_IDLE"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name"}, "not a valid function name"),
        ({"name": "t_x", "rate_limit": "lots"}, "rate limit"),
        ({"name": "t_x", "timeout": 0}, "timeout"),
        ({"name": "t_x", "timeout": 500}, "timeout"),
        ({"name": "t_x", "scheduling": "SILENT"}, "scheduling"),
    ],
)
def test_registry_decorator_rejects_bad_declarations(scratch_tools, kwargs, message):
    with pytest.raises((ImproperlyConfigured, ValueError), match=message):

        @tool(description="x", **kwargs)
        def fn(ctx: ToolContext) -> dict[str, Any]:
            return {}


def test_registry_rejects_untyped_args_unknown_sensitive_and_duplicates(scratch_tools):
    with pytest.raises(ImproperlyConfigured, match="has no type"):

        @tool(name="t_untyped", description="x")
        def untyped(ctx: ToolContext, value) -> dict[str, Any]:  # type: ignore[no-untyped-def]
            return {}

    with pytest.raises(ImproperlyConfigured, match="sensitive"):

        @tool(name="t_sensitive", description="x", sensitive=("nope",))
        def sensitive(ctx: ToolContext, value: str) -> dict[str, Any]:
            return {}

    @tool(name="t_dup", description="x")
    def first(ctx: ToolContext) -> dict[str, Any]:
        return {}

    with pytest.raises(ImproperlyConfigured, match="registered twice"):

        @tool(name="t_dup", description="x")
        def second(ctx: ToolContext) -> dict[str, Any]:
            return {}


def test_registry_builtins_are_loaded_from_tool_modules():
    assert {"get_current_time", "send_email", "lookup_record"} <= set(registry())
    assert get_tool("send_email").sensitive == ("body",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5/min", (5, 60)), ("1/sec", (1, 1)), (" 10 / hour ", (10, 3600)), ("2/day", (2, 86400))],
)
def test_registry_parse_rate_limit_accepts_rates(value, expected):
    assert parse_rate_limit(value) == expected


@pytest.mark.parametrize("value", ["", "5", "0/min", "5/week", "-1/min", "five/min"])
def test_registry_parse_rate_limit_rejects_others(value):
    with pytest.raises(ValueError, match="rate limit"):
        parse_rate_limit(value)


def test_registry_json_schema_conversion_ignores_unsupported_keywords():
    schema = json_schema_to_gemini(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": False,
            "properties": {"n": {"type": "integer", "exclusiveMinimum": 0, "description": "N"}},
            "required": ["n"],
        }
    )
    assert schema.type == types.Type.OBJECT
    assert schema.properties["n"].type == types.Type.INTEGER
    assert schema.properties["n"].description == "N"
    assert schema.required == ["n"]
