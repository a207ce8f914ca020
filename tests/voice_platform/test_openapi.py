from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_openapi_schema_lists_agent_endpoints_and_bearer_auth():
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/agents/" in schema["paths"]
    assert "/api/v1/agents/{id}/" in schema["paths"]
    scheme = schema["components"]["securitySchemes"]["TenantApiKey"]
    assert scheme == {
        "type": "http",
        "scheme": "bearer",
        "description": scheme["description"],
    }


def test_openapi_docs_page_is_served():
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def api_schema() -> dict:
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    return response.json()


def api_operations(schema: dict):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


def test_openapi_every_operation_documents_its_error_answers():
    schema = api_schema()
    error = {"$ref": "#/components/schemas/Error"}
    for path, method, operation in api_operations(schema):
        responses = operation["responses"]
        for status in ("401", "403", "404", "429", "503"):
            assert responses[status]["content"]["application/json"]["schema"] == error, (
                path, method, status,
            )  # fmt: skip
        bad_input = responses["400"]["content"]["application/json"]["schema"]
        assert error in bad_input["anyOf"], (path, method)
        assert ("413" in responses) == ("requestBody" in operation), (path, method)
        assert "Retry-After" in responses["429"]["headers"]
    assert schema["components"]["schemas"]["Error"]["required"] == ["detail", "code"]


def test_openapi_error_schema_matches_real_error_bodies(alice):
    import jsonschema

    schema = api_schema()["components"]["schemas"]
    for response in (
        Client().get("/api/v1/agents/"),  # 401
        alice.client.get("/api/v1/agents/999999/"),  # 404
        alice.client.get("/api/v1/agents/-1/"),  # 404 from the URL resolver
        alice.client.post(
            "/api/v1/agents/", "[" * 5000, content_type="application/json"
        ),  # 400 too_deep
    ):
        assert response["Content-Type"] == "application/json", response.content
        jsonschema.validate(response.json(), schema["Error"])
    field_errors = alice.client.post("/api/v1/agents/", {}, format="json")
    assert field_errors.status_code == 400
    jsonschema.validate(field_errors.json(), schema["FieldErrors"])


def test_openapi_filters_document_what_validation_accepts():
    schema = api_schema()
    params = {
        p["name"]: p["schema"] for p in schema["paths"]["/api/v1/sessions/"]["get"]["parameters"]
    }
    assert params["agent"]["type"] == "integer"
    assert params["agent"]["minimum"] == 1
    assert params["status"]["enum"] == ["connecting", "active", "reconnecting", "ended", "failed"]
    assert params["user_id"]["maxLength"] == 200
    assert params["page_size"] == {"type": "integer", "minimum": 1, "maximum": 200}
    assert params["page"]["minimum"] == 1


@pytest.mark.parametrize(
    "query",
    ["page_size=201", "page_size=0", "page_size=abc", "page=last", "page=0", "agent=0", "since="],
)
def test_values_the_schema_documents_as_invalid_are_refused(alice, query):
    # each was accepted (clamped, ignored or read as "not given") although the schema
    # documents it as invalid
    path = "/api/v1/tool-calls/" if query.startswith("since") else "/api/v1/sessions/"
    response = alice.client.get(f"{path}?{query}")
    assert response.status_code == 400, (query, response.content)


def test_allowlist_update_schema_marks_the_target_tool_read_only():
    schema = api_schema()["components"]["schemas"]
    update = schema["PatchedAgentToolUpdateRequest"]["properties"]
    assert "tool" not in update
    assert "webhook_tool" not in update
