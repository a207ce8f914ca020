"""The REST API's edge: every request body and query filter is checked here before use.

A JSON body is bounded in size and nesting depth *before* it is parsed (``json.loads``
recurses, so ~3,000 nested brackets were a ``RecursionError`` and a 500), and a parsed
body holding a NUL character or a lone UTF-16 surrogate anywhere (a key or a value, at any
depth) is refused with 400: PostgreSQL can store neither in text or ``jsonb``, so they
used to fail at the database as a 500. Query filters get the same text rule and ASCII-only
integers (Arabic-Indic or fullwidth digits pass ``str.isdigit()`` and even ``int()``;
a superscript two passes the first and not the second).
Errors answer ``{"detail": ..., "code": ...}`` (docs/api.md).
"""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.utils import json as drf_json

from voice_platform.pagination import DefaultPagination

# Defaults; the settings of the same names override them (docs/api.md).
MAX_BODY_BYTES = 1_048_576
MAX_DEPTH = 64

# A JSON string literal (escapes included): brackets inside one are not nesting.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_ASCII_INTEGER = re.compile(r"[0-9]{1,18}")  # 18 digits: always fits PostgreSQL's bigint


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "too_large"


def max_body_bytes() -> int:
    return int(getattr(settings, "REST_INPUT_MAX_BODY_BYTES", MAX_BODY_BYTES))


def max_depth() -> int:
    return int(getattr(settings, "REST_INPUT_MAX_DEPTH", MAX_DEPTH))


def json_depth_exceeds(text: str, limit: int) -> bool:
    """Whether ``text`` nests arrays/objects deeper than ``limit``, without recursing.

    String literals are dropped first so brackets inside them do not count; what is left
    is scanned with a counter. Malformed input is the parser's to refuse afterwards.
    """
    brackets = _NOT_A_BRACKET.sub("", _STRING.sub("", text))
    depth = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def unstorable_text(value: str) -> bool:
    """NUL, or a lone surrogate (no UTF-8 form): text PostgreSQL cannot store."""
    if "\x00" in value:
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _first_unstorable(data: Any) -> bool:
    stack = [data]  # iterative: the depth is bounded already, but a walk needs no recursion
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if unstorable_text(item):
                return True
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def invalid_text_error() -> exceptions.ParseError:
    return exceptions.ParseError(
        "Text may not contain NUL characters or lone UTF-16 surrogates.", code="invalid_text"
    )


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser behind a size bound, a depth bound and a storable-text check."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        limit = max_body_bytes()
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise BodyTooLarge(f"Request body over {limit} bytes.")
        try:
            text = codecs.decode(raw, encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise exceptions.ParseError(
                f"Request body is not valid {encoding}.", code="parse_error"
            ) from exc
        depth = max_depth()
        if json_depth_exceeds(text, depth):
            raise exceptions.ParseError(f"JSON nested deeper than {depth} levels.", code="too_deep")
        try:
            parse_constant = drf_json.strict_constant if self.strict else None
            data = drf_json.loads(text, parse_constant=parse_constant, parse_float=_finite_float)
        except (ValueError, RecursionError) as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}", code="parse_error") from exc
        if _first_unstorable(data):
            raise invalid_text_error()
        return data


def _finite_float(literal: str) -> float:
    # "1e400" is valid JSON but overflows to infinity, which PostgreSQL's json refuses.
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"number {literal[:20]} is out of range")
    return value


# --- query filters ---------------------------------------------------------------------------


class TextFilterField(serializers.CharField):
    """A text query filter: NUL and lone surrogates are a 400 (DRF's own validators agree).

    Whitespace is kept: a filter matches exactly what was stored, and the schema's
    ``minLength`` holds for a value of spaces too.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, str) and unstorable_text(data):
            raise serializers.ValidationError(
                "May not contain NUL characters or lone UTF-16 surrogates.", code="invalid_text"
            )
        return super().to_internal_value(data)


class IdFilterField(serializers.IntegerField):
    """An id in a query filter: ASCII digits only (no sign, no other script's digits)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 10**18 - 1)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        if not isinstance(data, str) or not _ASCII_INTEGER.fullmatch(data):
            raise serializers.ValidationError(
                "A positive whole number in ASCII digits (at most 18).", code="invalid"
            )
        return int(super().to_internal_value(data))


def validate_query(
    serializer_class: type[serializers.Serializer[Any]], query_params: Any
) -> dict[str, Any]:
    """Validate ``query_params`` with ``serializer_class``; a bad filter is a 400.

    An empty filter (``?since=``) is refused too: DRF reads an empty form value as "not
    given", while the schema documents every filter as non-empty.
    """
    filters = serializer_class(data=query_params)
    blank: dict[str, Any] = {
        str(name): ["May not be empty."]
        for name in filters.fields
        if name in query_params and query_params.get(name) == ""
    }
    if blank:
        raise serializers.ValidationError(blank)
    filters.is_valid(raise_exception=True)
    return dict(filters.validated_data)


# --- read-only fields ------------------------------------------------------------------------


class RefuseReadOnlyFieldsMixin(serializers.Serializer[Any]):
    """A write naming a read-only field is a 400 on that field, not silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            errors = {
                name: ["This field is read-only."]
                for name, field in self.fields.items()
                if field.read_only and name in data
            }
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


# --- pagination --------------------------------------------------------------------------------


class StrictPagination(DefaultPagination):
    """``page`` and ``page_size`` as documented: ASCII integers in range, else 400.

    DRF would silently clamp or ignore a bad ``page_size`` and accept ``page=last``, values
    the schema documents as invalid. A page past the end stays DRF's 404.
    """

    last_page_strings = ()

    def _number(self, request: Any, name: str, maximum: int) -> int | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        if not _ASCII_INTEGER.fullmatch(raw) or not 1 <= int(raw) <= maximum:
            raise serializers.ValidationError(
                {name: [f"A whole number from 1 to {maximum} in ASCII digits."]}
            )
        return int(raw)

    def get_page_size(self, request: Any) -> int:
        size = self._number(request, self.page_size_query_param, self.max_page_size)
        return size if size is not None else self.page_size

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        self._number(request, self.page_query_param, 10**18 - 1)
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.page_query_param: {"minimum": 1, "maximum": 10**18 - 1},
            self.page_size_query_param: {"minimum": 1, "maximum": self.max_page_size},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters
