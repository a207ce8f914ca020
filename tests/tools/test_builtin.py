"""Every built-in tool: good arguments, each bad argument, policy pass and fail, its run."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from google.genai import types

from tools.models import LookupRecord, OutboxEmail
from tools.registry import PolicyViolation, ToolArgumentError, ToolContext, get_tool
from voice_platform.tenancy.scope import tenant_scope


def context(tenant=None, policy=None) -> ToolContext:
    return ToolContext(
        tenant=tenant,
        agent=None,
        session_id=None,
        end_user_id="u1",
        call_id="c1",
        policy=policy or {},
    )


# --- get_current_time ----------------------------------------------------------------------


def test_get_current_time_declaration_requires_timezone():
    declaration = get_tool("get_current_time").function_declaration()
    assert declaration.parameters.required == ["timezone"]
    assert declaration.parameters.properties["timezone"].type == types.Type.STRING


def test_get_current_time_validates_and_runs():
    spec = get_tool("get_current_time")
    args = spec.validate_args({"timezone": "Asia/Tokyo"})
    result = spec.fn(context(), **args.model_dump())
    parsed = dt.datetime.fromisoformat(result["datetime"])
    assert parsed.utcoffset() == dt.timedelta(hours=9)
    assert abs(parsed - dt.datetime.now(ZoneInfo("UTC"))) < dt.timedelta(seconds=5)
    assert result["timezone"] == "Asia/Tokyo"
    assert result["weekday"] == parsed.strftime("%A")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"timezone": "Mars/Base"}, "invalid argument 'timezone': unknown time zone"),
        ({"timezone": "../etc/passwd"}, "invalid argument 'timezone'"),
        ({"timezone": 5}, "invalid argument 'timezone'"),
        ({}, "missing argument 'timezone'"),
        ({"timezone": "UTC", "extra": 1}, "unexpected argument 'extra'"),
    ],
)
def test_get_current_time_rejects_bad_arguments(args, message):
    with pytest.raises(ToolArgumentError, match=message):
        get_tool("get_current_time").validate_args(args)


def test_get_current_time_takes_no_policy():
    spec = get_tool("get_current_time")
    assert spec.validate_policy({}) == {}
    with pytest.raises(ValueError, match="takes no policy"):
        spec.validate_policy({"anything": 1})


# --- send_email ----------------------------------------------------------------------------

GOOD_EMAIL = {"to": "bob@example.com", "subject": "Hi", "body": "Hello Bob"}


def test_send_email_validates_good_arguments():
    args = get_tool("send_email").validate_args(GOOD_EMAIL)
    assert args.model_dump() == GOOD_EMAIL


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"to": "not-an-address"}, "invalid argument 'to': 'not-an-address' is not a valid"),
        ({"to": "bob@exa mple.com"}, "invalid argument 'to'"),
        ({"to": "a" * 250 + "@x.com"}, "invalid argument 'to'"),
        ({"subject": ""}, "invalid argument 'subject'"),
        ({"subject": "s" * 201}, "invalid argument 'subject'"),
        ({"body": "b" * 20_001}, "invalid argument 'body'"),
        ({"body": None}, "invalid argument 'body'"),
        ({"cc": "x@example.com"}, "unexpected argument 'cc'"),
    ],
)
def test_send_email_rejects_bad_arguments(overrides, message):
    with pytest.raises(ToolArgumentError, match=message):
        get_tool("send_email").validate_args({**GOOD_EMAIL, **overrides})


@pytest.mark.parametrize("missing", ["to", "subject", "body"])
def test_send_email_rejects_missing_arguments(missing):
    args = {k: v for k, v in GOOD_EMAIL.items() if k != missing}
    with pytest.raises(ToolArgumentError, match=f"missing argument '{missing}'"):
        get_tool("send_email").validate_args(args)


@pytest.mark.parametrize(
    ("policy", "to", "allowed"),
    [
        ({}, "anyone@anywhere.org", True),
        ({"allowed_domains": [], "allowed_addresses": []}, "anyone@anywhere.org", True),
        ({"allowed_domains": ["example.com"]}, "bob@example.com", True),
        ({"allowed_domains": ["Example.COM"]}, "BOB@example.com", True),
        ({"allowed_domains": ["example.com"]}, "bob@evil.com", False),
        ({"allowed_domains": ["example.com"]}, "bob@sub.example.com", False),
        ({"allowed_domains": ["example.com"]}, "bob@example.com.evil.com", False),
        ({"allowed_addresses": ["boss@corp.com"]}, "boss@corp.com", True),
        ({"allowed_addresses": ["boss@corp.com"]}, "other@corp.com", False),
        ({"allowed_domains": ["a.com"], "allowed_addresses": ["x@b.com"]}, "x@b.com", True),
    ],
)
def test_send_email_policy_allows_only_listed_recipients(policy, to, allowed):
    spec = get_tool("send_email")
    validated_policy = spec.validate_policy(policy)
    args = spec.validate_args({**GOOD_EMAIL, "to": to})
    if allowed:
        spec.check_policy(args, validated_policy)
    else:
        with pytest.raises(PolicyViolation, match=f"recipient {to} is not allowed by policy"):
            spec.check_policy(args, validated_policy)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"allowed_domains": "example.com"}, "allowed_domains"),
        ({"allowed_addresses": ["nope"]}, "allowed_addresses"),
        ({"allowed_recipients": ["x@y.com"]}, "unexpected policy field 'allowed_recipients'"),
    ],
)
def test_send_email_policy_schema_rejects_bad_policies(policy, message):
    with pytest.raises(ValueError, match=message):
        get_tool("send_email").validate_policy(policy)


def test_send_email_redacts_body_in_audit():
    assert get_tool("send_email").redact(GOOD_EMAIL) == {**GOOD_EMAIL, "body": "[redacted]"}


def test_send_email_writes_outbox_row_for_its_tenant(alice):
    spec = get_tool("send_email")
    with tenant_scope(alice.tenant.pk):
        result = spec.fn(context(alice.tenant), **GOOD_EMAIL)
        email = OutboxEmail.objects.get(pk=result["outbox_id"])
    assert result["status"] == "accepted"
    assert (email.tenant_id, email.to, email.subject, email.body) == (
        alice.tenant.pk,
        "bob@example.com",
        "Hi",
        "Hello Bob",
    )


# --- lookup_record -------------------------------------------------------------------------


def test_lookup_record_schema_is_derived_from_hints():
    spec = get_tool("lookup_record")
    props = spec.function_declaration().parameters.properties
    assert props["key"].type == types.Type.STRING
    assert props["key"].min_length == 1
    assert spec.validate_args({"key": "k"}).key == "k"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "missing argument 'key'"),
        ({"key": ""}, "invalid argument 'key'"),
        ({"key": "k" * 201}, "invalid argument 'key'"),
        ({"key": ["a"]}, "invalid argument 'key'"),
        ({"key": "a", "tenant": 2}, "unexpected argument 'tenant'"),
    ],
)
def test_lookup_record_rejects_bad_arguments(args, message):
    with pytest.raises(ToolArgumentError, match=message):
        get_tool("lookup_record").validate_args(args)


def test_lookup_record_reads_only_own_tenant(alice, charlie):
    LookupRecord.unscoped.create(tenant=alice.tenant, key="plan", value="gold")
    LookupRecord.unscoped.create(tenant=charlie.tenant, key="secret", value="charlie-only")
    LookupRecord.unscoped.create(tenant=charlie.tenant, key="plan", value="charlie-plan")
    spec = get_tool("lookup_record")
    with tenant_scope(alice.tenant.pk):
        found = spec.fn(context(alice.tenant), key="plan")
        foreign = spec.fn(context(alice.tenant), key="secret")
    assert found == {"found": True, "key": "plan", "value": "gold"}
    assert foreign == {"found": False, "key": "secret"}
