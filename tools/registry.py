"""The tool registry: Python functions the model may call, declared with ``@tool``.

A tool is a plain sync function ``fn(ctx: ToolContext, **validated_args) -> dict``. The
decorator records its name, description, parameter schema (a pydantic model, given or
derived from the type hints), an optional per-agent policy model, a default timeout and rate
limit, its Live behaviour (blocking or not) and which arguments are sensitive (redacted in
the audit log). Modules listed in ``settings.TOOL_MODULES`` are imported at start-up
(``ToolsConfig.ready``); importing them registers their tools.
"""

from __future__ import annotations

import importlib
import inspect
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from google.genai import types

Behavior = Literal["BLOCKING", "NON_BLOCKING"]
Scheduling = Literal["WHEN_IDLE", "INTERRUPT", "SILENT"]

# Gemini function names: letters, digits, underscores, dots and dashes, at most 64.
TOOL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
RATE_LIMIT_RE = re.compile(r"^\s*(\d+)\s*/\s*(sec|second|min|minute|hour|day)\s*$")
RATE_PERIODS = {"sec": 1, "second": 1, "min": 60, "minute": 60, "hour": 3600, "day": 86400}


class ToolArgumentError(ValueError):
    """The model's arguments do not match the tool's schema. The message names the field."""


class PolicyViolation(ValueError):
    """The arguments are valid but the agent's policy for this tool does not allow them."""


class ToolPolicy(pydantic.BaseModel):
    """Base of per-agent policy models. Override ``check`` to refuse arguments."""

    model_config = pydantic.ConfigDict(extra="forbid")

    def check(self, args: pydantic.BaseModel) -> None:
        """Raise ``PolicyViolation`` with a reason when ``args`` are not allowed."""


@dataclass(frozen=True)
class ToolContext:
    """What a tool function knows about the call it serves."""

    tenant: Any  # voice_platform.tenancy.models.Tenant
    agent: Any  # agents.models.Agent
    session_id: Any
    end_user_id: str
    call_id: str
    policy: Any  # the validated ToolPolicy, or a dict for tools without a policy model
    record_id: int | None = None


ToolFunction = Callable[..., dict[str, Any]]


def parse_rate_limit(value: str) -> tuple[int, int]:
    """``"5/min"`` -> ``(5, 60)``. Raises ``ValueError`` for anything else."""
    match = RATE_LIMIT_RE.match(value or "")
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"rate limit must look like 5/min (N/sec|min|hour|day), got {value!r}")
    return int(match.group(1)), RATE_PERIODS[match.group(2)]


def pydantic_error_reason(exc: pydantic.ValidationError, *, what: str = "argument") -> str:
    """A one-line reason naming the first offending field: ``invalid argument 'to': ...``."""
    error = exc.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"])
    # pydantic prefixes messages raised by validators with "Value error, ".
    message = message.removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"missing {what} {loc!r}"
    if error["type"] == "extra_forbidden":
        return f"unexpected {what} {loc!r}"
    if not loc:
        return f"invalid {what}s: {message}"
    return f"invalid {what} {loc!r}: {message}"


# Keys of google.genai's JSONSchema model (by alias); others are dropped before conversion
# because that model forbids unknown keys ($schema, additionalProperties: false, ...).
_NESTED_ONE = {"items", "additionalProperties"}
_NESTED_LIST = {"anyOf", "oneOf", "allOf"}
_NESTED_MAP = {"properties", "$defs", "defs"}


def _sdk_keys() -> set[str]:
    keys: set[str] = set()
    for name, info in types.JSONSchema.model_fields.items():
        keys.add(name)
        if info.alias:
            keys.add(info.alias)
    keys.update({"$ref", "$defs"})
    return keys


def _sanitize(schema: Any, keys: set[str]) -> Any:
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in keys and key not in _NESTED_ONE | _NESTED_LIST | _NESTED_MAP:
            continue
        if key in _NESTED_MAP and isinstance(value, dict):
            out[key] = {k: _sanitize(v, keys) for k, v in value.items()}
        elif key in _NESTED_LIST and isinstance(value, list):
            out[key] = [_sanitize(v, keys) for v in value]
        elif key in _NESTED_ONE:
            if isinstance(value, dict):
                out[key] = _sanitize(value, keys)
            # additionalProperties: false/true carries nothing the Live schema can express
        else:
            out[key] = value
    return out


def json_schema_to_gemini(schema: Mapping[str, Any]) -> types.Schema:
    """Convert a JSON Schema (what pydantic emits, or a tenant's webhook schema) to the
    Gemini ``Schema`` with the SDK's own converter; ``$defs``/``$ref`` are resolved by it."""
    cleaned = _sanitize(dict(schema), _sdk_keys())
    # Bare {"type": "object"} without properties still needs "properties" for Live.
    if cleaned.get("type") == "object" and "properties" not in cleaned:
        cleaned["properties"] = {}
    json_schema = types.JSONSchema.model_validate(cleaned)
    return types.Schema.from_json_schema(json_schema=json_schema)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    fn: ToolFunction
    params: type[pydantic.BaseModel]
    policy: type[ToolPolicy] | None = None
    timeout: float = 10.0
    rate_limit: str = "30/min"
    behavior: Behavior = "BLOCKING"
    scheduling: Scheduling | None = None
    sensitive: tuple[str, ...] = field(default_factory=tuple)

    def parameters_schema(self) -> dict[str, Any]:
        return self.params.model_json_schema()

    def policy_schema(self) -> dict[str, Any]:
        return self.policy.model_json_schema() if self.policy is not None else {}

    def function_declaration(self) -> types.FunctionDeclaration:
        declaration = types.FunctionDeclaration(
            name=self.name,
            description=self.description,
            parameters=json_schema_to_gemini(self.parameters_schema()),
        )
        if self.behavior == "NON_BLOCKING":
            declaration.behavior = types.Behavior.NON_BLOCKING
        return declaration

    def validate_args(self, args: Mapping[str, Any]) -> pydantic.BaseModel:
        try:
            return self.params.model_validate(dict(args))
        except pydantic.ValidationError as exc:
            raise ToolArgumentError(pydantic_error_reason(exc)) from exc

    def validate_policy(self, policy: Mapping[str, Any] | None) -> ToolPolicy | dict[str, Any]:
        """The validated policy object. Raises ``ValueError`` with a readable reason."""
        policy = dict(policy or {})
        if self.policy is None:
            if policy:
                raise ValueError(f"tool {self.name!r} takes no policy")
            return {}
        try:
            return self.policy.model_validate(policy)
        except pydantic.ValidationError as exc:
            raise ValueError(pydantic_error_reason(exc, what="policy field")) from exc

    def check_policy(self, args: pydantic.BaseModel, policy: ToolPolicy | dict[str, Any]) -> None:
        if isinstance(policy, ToolPolicy):
            policy.check(args)

    def redact(self, args: Mapping[str, Any]) -> dict[str, Any]:
        return redact_arguments(args, self.sensitive)


def redact_arguments(args: Mapping[str, Any], sensitive: Iterable[str]) -> dict[str, Any]:
    hidden = set(sensitive)
    return {key: ("[redacted]" if key in hidden else value) for key, value in args.items()}


_REGISTRY: dict[str, ToolSpec] = {}


def _params_from_hints(fn: ToolFunction, name: str) -> type[pydantic.BaseModel]:
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    parameters = list(inspect.signature(fn).parameters.values())
    for parameter in parameters[1:]:  # the first one is the ToolContext
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise ImproperlyConfigured(f"tool {name!r}: *args/**kwargs cannot be declared")
        if parameter.name not in hints:
            raise ImproperlyConfigured(f"tool {name!r}: argument {parameter.name!r} has no type")
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (hints[parameter.name], default)
    model_name = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]", name)) + "Args"
    model: type[pydantic.BaseModel] = pydantic.create_model(
        model_name,
        __config__=pydantic.ConfigDict(extra="forbid"),
        **fields,
    )
    return model


def tool(
    *,
    name: str,
    description: str,
    params: type[pydantic.BaseModel] | None = None,
    policy: type[ToolPolicy] | None = None,
    timeout: float = 10.0,
    rate_limit: str = "30/min",
    behavior: Behavior = "BLOCKING",
    scheduling: Scheduling | None = None,
    sensitive: Iterable[str] = (),
) -> Callable[[ToolFunction], ToolFunction]:
    """Register ``fn`` as a tool. The function itself is returned unchanged."""
    if not TOOL_NAME_RE.match(name):
        raise ImproperlyConfigured(f"tool name {name!r} is not a valid function name")
    parse_rate_limit(rate_limit)
    if not 0 < timeout <= settings.TOOL_TIMEOUT_MAX:
        raise ImproperlyConfigured(f"tool {name!r}: timeout must be in (0, TOOL_TIMEOUT_MAX]")
    if behavior == "NON_BLOCKING" and scheduling is None:
        scheduling = "WHEN_IDLE"
    if behavior == "BLOCKING" and scheduling is not None:
        raise ImproperlyConfigured(f"tool {name!r}: scheduling applies to NON_BLOCKING tools")

    def register(fn: ToolFunction) -> ToolFunction:
        model = params if params is not None else _params_from_hints(fn, name)
        spec = ToolSpec(
            name=name,
            description=description,
            fn=fn,
            params=model,
            policy=policy,
            timeout=float(timeout),
            rate_limit=rate_limit,
            behavior=behavior,
            scheduling=scheduling,
            sensitive=tuple(sensitive),
        )
        unknown = set(spec.sensitive) - set(model.model_fields)
        if unknown:
            raise ImproperlyConfigured(f"tool {name!r}: unknown sensitive args {sorted(unknown)}")
        existing = _REGISTRY.get(name)
        same_function = existing is not None and (
            existing.fn.__module__,
            existing.fn.__qualname__,
        ) == (fn.__module__, fn.__qualname__)
        if existing is not None and not same_function:
            raise ImproperlyConfigured(f"tool {name!r} is registered twice")
        _REGISTRY[name] = spec
        return fn

    return register


def load_tool_modules(modules: Iterable[str] | None = None) -> None:
    """Import the operator's tool modules (``settings.TOOL_MODULES``); idempotent."""
    for module in settings.TOOL_MODULES if modules is None else modules:
        importlib.import_module(module)


def registry() -> dict[str, ToolSpec]:
    """Every registered tool by name (a copy)."""
    return dict(_REGISTRY)


def get_tool(name: str) -> ToolSpec | None:
    return _REGISTRY.get(name)


def unregister(name: str) -> None:
    """For tests and plugins that are unloaded: the tool then counts as missing from code."""
    _REGISTRY.pop(name, None)
