"""`/` says where to go; `/api/docs/` works offline (every asset served by the platform)."""

from __future__ import annotations

import re

import pytest

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.mark.django_db
def test_the_landing_page_links_the_admin_the_api_docs_and_the_playground(client):
    response = client.get("/")
    assert response.status_code == 200
    links = set(ASSET.findall(response.content.decode()))
    assert {"/admin/", "/api/docs/", "/api/schema/", "/admin/agents/agent/"} <= links
    for link in links:
        assert client.get(link).status_code in (200, 302), link  # 302: the admin's login


@pytest.mark.django_db
def test_the_landing_page_answers_only_get(client):
    assert client.post("/").status_code == 405


@pytest.mark.django_db
def test_swagger_ui_loads_nothing_from_another_host(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assets = ASSET.findall(page)
    scripts = re.findall(r"""["']([^"']+\.js)["']""", page)
    assert scripts, "Swagger UI's scripts are on the page"
    for url in {*assets, *scripts}:
        assert url.startswith("/"), f"{url} is not served by the platform"
        assert "cdn" not in url
        served = client.get(url)
        assert served.status_code == 200, url
        assert b"".join(served.streaming_content if served.streaming else [served.content])
