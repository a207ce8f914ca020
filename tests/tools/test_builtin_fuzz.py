"""Generated arguments for every built-in tool, through the path the model's calls take.

Each example is a function call as the live session hands it to admission
(``tool_call_admit``: allowlist, schema, policy, rate limit, the audit row) and, when
admitted, to its worker (``tool_call_execute``: claim, run, outcome). Three kinds of
arguments per tool: valid ones, near-valid ones (one field missing, extra, of the wrong type,
too long, or with text PostgreSQL cannot store) and garbage (any JSON object). The property:
nothing raises, and every call ends final: ``succeeded``, or ``rejected`` with a reason the
model can read. Valid arguments always succeed.

Bounded for CI (derandomized, ``MAX_EXAMPLES`` per tool and kind); the number of examples
that ran is counted in ``RAN`` (docs/security.md quotes it).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from typing import Any
from zoneinfo import available_timezones

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tools.conftest import allow
from tools.admission import ToolCallRequest, tool_call_admit
from tools.allowlist import tool_allowlist_for_agent
from tools.execution import tool_call_execute
from tools.models import ToolCallRecord
from tools.outcome import tool_call_response
from tools.registry import registry
from voice_platform.tenancy.scope import tenant_scope

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("tool_threads")]

MAX_EXAMPLES = 30
RAN: Counter[str] = Counter()
_unique = itertools.count()

# --- strategies ---------------------------------------------------------------------------

# Text the model can send: JSON strings, so any code point, NUL and lone surrogates included.
any_text = st.text(st.characters(codec=None, categories=None), max_size=40)
unstorable_text = st.builds(
    lambda head, bad, tail: head + bad + tail,
    any_text,
    st.sampled_from(["\x00", "\ud800", "\udfff", "\ud83d"]),
    any_text,
)
json_scalar = st.none() | st.booleans() | st.integers() | st.floats() | any_text
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
wrong_type = st.none() | st.booleans() | st.integers() | st.floats() | st.lists(json_scalar)

email_local = st.from_regex(r"[a-z0-9_+-]{1,16}(\.[a-z0-9_+-]{1,8}){0,2}", fullmatch=True)
subject_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]))

# Valid arguments of each built-in tool (send_email's policy allows example.com only).
VALID: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "get_current_time": st.fixed_dictionaries(
        {"timezone": st.sampled_from(sorted(available_timezones()))}
    ),
    "send_email": st.fixed_dictionaries(
        {
            "to": email_local.map(lambda local: f"{local}@example.com"),
            "subject": subject_text.filter(str.strip).map(lambda s: s[:200]),
            "body": st.text(st.characters(codec="utf-8"), max_size=200),
        }
    ),
    "lookup_record": st.fixed_dictionaries(
        {
            "key": st.text(st.characters(codec="utf-8"), min_size=1, max_size=200).filter(
                lambda key: "\x00" not in key
            )
        }
    ),
}
POLICY = {"send_email": {"allowed_domains": ["example.com"]}}


@st.composite
def near_valid(draw: st.DrawFn, tool_name: str) -> dict[str, Any]:
    """Valid arguments with one thing wrong."""
    args = dict(draw(VALID[tool_name]))
    field = draw(st.sampled_from(sorted(args)))
    how = draw(st.sampled_from(["drop", "extra", "type", "long", "empty", "unstorable", "other"]))
    if how == "drop":
        del args[field]
    elif how == "extra":
        args[draw(any_text.filter(lambda key: key not in args))] = draw(json_value)
    elif how == "type":
        args[field] = draw(wrong_type)
    elif how == "long":
        args[field] = draw(st.sampled_from(["x", "é", "@", "/"])) * draw(st.integers(201, 30_000))
    elif how == "empty":
        args[field] = draw(st.sampled_from(["", " ", "\t\n"]))
    elif how == "unstorable":
        args[field] = draw(unstorable_text)
    else:
        args[field] = draw(any_text)
    return args


garbage = st.dictionaries(any_text, json_value, max_size=5)


def strategy(tool_name: str, kind: str) -> st.SearchStrategy[dict[str, Any]]:
    if kind == "valid":
        return VALID[tool_name]
    if kind == "near_valid":
        return near_valid(tool_name)
    return garbage


# Every built-in tool, from the registry: a new one is fuzzed too, and fails until it has
# its valid arguments in VALID.
BUILTIN = sorted(name for name, spec in registry().items() if spec.fn.__module__ == "tools.builtin")
assert BUILTIN, "the built-in tools are registered when Django starts"


# --- the property -----------------------------------------------------------------------


def call(session: Any, allowlist: Any, name: str, args: dict[str, Any]) -> ToolCallRecord:
    """One function call of the model, as the live session makes it: admitted, and run by
    its worker when accepted. A fresh end user each time, so the rate limit stays out."""
    n = next(_unique)
    request = ToolCallRequest(
        tenant_id=session.tenant_id, session_id=session.pk, end_user_id=f"fuzz-{n}",
        call_id=f"fuzz-{n}", name=name, args=args, turn=n,
    )  # fmt: skip
    with tenant_scope(session.tenant_id):
        record = tool_call_admit(request=request, allowlist=allowlist, dispatch=None).record
        if record.status == ToolCallRecord.Status.QUEUED:
            record = tool_call_execute(record_id=record.pk, notify=lambda finished: None)
    return record


@pytest.mark.parametrize("kind", ["valid", "near_valid", "garbage"])
@pytest.mark.parametrize("tool_name", BUILTIN)
def test_builtin_tool_arguments_always_end_final(
    alice_agent, alice_session, synced_tools, tool_name, kind
):
    assert tool_name in VALID, f"add the valid arguments of {tool_name!r} to VALID"
    allow(alice_agent, tool_name, policy=POLICY.get(tool_name, {}))
    with tenant_scope(alice_agent.tenant_id):
        allowlist = tool_allowlist_for_agent(agent=alice_agent)

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(args=strategy(tool_name, kind))
    def check(args: dict[str, Any]) -> None:
        RAN[f"{tool_name}/{kind}"] += 1
        record = call(alice_session, allowlist, tool_name, args)
        stored = ToolCallRecord.unscoped.get(pk=record.pk)
        assert stored.is_finished
        response = tool_call_response(record=stored)
        json.dumps(response)  # what the model gets is JSON
        if kind == "valid":
            assert stored.status == "succeeded", (stored.status, stored.error)
        else:
            assert stored.status in ("succeeded", "rejected"), (stored.status, stored.error)
        if stored.status == "rejected":
            reason = response["error"]
            assert isinstance(reason, str)
            assert reason.strip()
            assert reason == stored.rejection_reason

    check()
    ran = RAN[f"{tool_name}/{kind}"]
    assert ran >= 1
    print(f"{tool_name}/{kind}: {ran} examples")  # shown with -s (docs/security.md)
