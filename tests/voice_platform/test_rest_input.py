"""Every REST input has a documented answer: the inputs that used to answer 500 (issue 12).

NUL characters and lone UTF-16 surrogates (which PostgreSQL cannot store), JSON nested
deeper than the parser may recurse, non-ASCII digits in integer filters, and writes to
read-only fields all answer 400 with a clear message, never 500.
"""

from __future__ import annotations

import pytest
from django.test import override_settings

from tests.tools.conftest import allow
from tools.models import AgentTool, WebhookTool

pytestmark = pytest.mark.django_db

LONE_SURROGATE_JSON = '"bad \\ud800 text"'  # valid JSON, but no valid Unicode string


def tokens_url(agent) -> str:
    return f"/api/v1/agents/{agent.pk}/tokens/"


def post_raw(client, url: str, body: str):  # type: ignore[no-untyped-def]
    return client.generic("POST", url, body.encode(), content_type="application/json")


# --- request bodies (the project's JSON parser) ----------------------------------------------


@pytest.mark.parametrize(
    "value",
    ['"a\\u0000b"', LONE_SURROGATE_JSON, '{"k": ["x", "\\udfff"]}'],
    ids=["nul", "lone-high-surrogate", "nested-lone-low-surrogate"],
)
def test_token_metadata_with_unstorable_text_is_400(alice, alice_agent, value):
    body = f'{{"user_id": "u1", "metadata": {{"note": {value}}}}}'
    response = post_raw(alice.client, tokens_url(alice_agent), body)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_text"


def test_token_metadata_with_a_number_that_overflows_is_400(alice, alice_agent):
    # Python reads 1e400 as inf, which PostgreSQL's json refuses: this was a 500.
    body = '{"user_id": "u1", "metadata": {"a": 1e400}}'
    response = post_raw(alice.client, tokens_url(alice_agent), body)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "parse_error"


def test_token_user_id_with_nul_in_a_key_is_400(alice, alice_agent):
    body = '{"user_id": "u1", "metadata": {"a\\u0000": 1}}'
    response = post_raw(alice.client, tokens_url(alice_agent), body)
    assert response.status_code == 400, response.content


@pytest.mark.parametrize(
    "schema",
    [
        '{"type": "object", "description": "a\\u0000"}',
        '{"type": "object", "properties": {"\\ud800": {"type": "string"}}}',
    ],
    ids=["nul", "lone-surrogate"],
)
def test_webhook_tool_schema_with_unstorable_text_is_400(alice, schema):
    body = (
        '{"name": "lookup", "description": "d", "url": "https://example.com/hook", '
        f'"secret": "s3cret-value", "parameters_schema": {schema}}}'
    )
    response = post_raw(alice.client, "/api/v1/webhook-tools/", body)
    assert response.status_code == 400, response.content
    assert not WebhookTool.unscoped.exists()


@pytest.mark.parametrize("depth", [3_000, 100_000])
def test_deeply_nested_json_body_is_400_before_parsing(alice, alice_agent, depth):
    body = '{"user_id": "u1", "metadata": {"deep": ' + "[" * depth + "]" * depth + "}}"
    response = post_raw(alice.client, tokens_url(alice_agent), body)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "too_deep"


def test_nesting_within_the_bound_is_parsed(alice, alice_agent):
    body = '{"user_id": "u1", "metadata": {"deep": ' + "[" * 20 + "]" * 20 + "}}"
    response = post_raw(alice.client, tokens_url(alice_agent), body)
    assert response.status_code == 201, response.content


def test_brackets_inside_strings_do_not_count_as_nesting(alice, alice_agent):
    body = '{"user_id": "u1", "metadata": {"note": "' + "[{" * 1_500 + '\\""}}'
    response = post_raw(alice.client, tokens_url(alice_agent), body)
    assert response.status_code == 201, response.content


@override_settings(REST_INPUT_MAX_BODY_BYTES=1_000)
def test_oversized_json_body_is_413(alice, alice_agent):
    body = '{"user_id": "u1", "metadata": {"note": "' + "x" * 2_000 + '"}}'
    response = post_raw(alice.client, tokens_url(alice_agent), body)
    assert response.status_code == 413, response.content
    assert response.json()["code"] == "too_large"


def test_malformed_json_is_still_a_plain_400(alice, alice_agent):
    response = post_raw(alice.client, tokens_url(alice_agent), '{"user_id": ')
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


# --- query filters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "user_id=a%00b",
        "status=active%00",
        "agent=%C2%B2",  # "²": str.isdigit() says yes, int() says no
        "agent=%D9%A1",  # Arabic-Indic one
        "agent=%EF%BC%91",  # fullwidth one
        "agent=-1",
        "agent=99999999999999999999999",
    ],
)
def test_session_list_bad_filter_is_400(alice, query):
    response = alice.client.get(f"/api/v1/sessions/?{query}")
    assert response.status_code == 400, response.content


@pytest.mark.parametrize(
    "query", ["agent=%D9%A1", "agent=%C2%B2", "agent=0", "tool=a%00", "status=ok%00"]
)
def test_tool_call_list_bad_filter_is_400(alice, query):
    assert alice.client.get(f"/api/v1/tool-calls/?{query}").status_code == 400
    assert alice.client.get(f"/api/v1/tool-calls/export.csv?{query}").status_code == 400


def test_session_list_valid_filters_still_work(alice, alice_agent):
    query = f"agent={alice_agent.pk}&user_id=u1&status=active&page=1&page_size=10"
    response = alice.client.get(f"/api/v1/sessions/?{query}")
    assert response.status_code == 200, response.content
    assert response.json()["results"] == []


def test_session_list_unknown_status_is_400(alice):
    # the schema documents an enum: a value outside it is refused, not silently empty
    assert alice.client.get("/api/v1/sessions/?status=bogus").status_code == 400


# --- read-only fields -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"tool": "get_current_time"},
        {"webhook_tool": 1},
        {"id": 999},
        {"agent": 1},
        {"name": "renamed"},
        {"available": False},
        {"created_at": "2020-01-01T00:00:00Z"},
    ],
)
def test_allowlist_update_of_a_read_only_field_is_400(alice, alice_agent, payload):
    entry = allow(alice_agent, "send_email")
    url = f"/api/v1/agents/{alice_agent.pk}/tools/{entry.pk}/"
    response = alice.client.patch(url, payload, format="json")
    assert response.status_code == 400, response.content
    field = next(iter(payload))
    assert field in response.json()
    assert AgentTool.unscoped.get(pk=entry.pk).tool.name == "send_email"


def test_allowlist_update_of_writable_fields_still_works(alice, alice_agent):
    entry = allow(alice_agent, "send_email")
    url = f"/api/v1/agents/{alice_agent.pk}/tools/{entry.pk}/"
    response = alice.client.patch(url, {"enabled": False}, format="json")
    assert response.status_code == 200, response.content


def test_charlie_cannot_reach_alices_allowlist_entry_with_bad_input(alice, charlie, alice_agent):
    entry = allow(alice_agent, "send_email")
    url = f"/api/v1/agents/{alice_agent.pk}/tools/{entry.pk}/"
    assert charlie.client.patch(url, {"enabled": False}, format="json").status_code == 404
