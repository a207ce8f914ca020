"""The admin's widget snippet on a tenant's site in headless Chromium: it talks from an
allowed origin (its token request passing the site's CSRF check, an ending on the server
shown and one click starting anew) and is refused (4003, shown to the visitor) from one
that is not."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from channels.db import database_sync_to_async

from agents.models import Agent
from tests.browser.conftest import write_mic_wav
from tests.browser.pages import admin_login, new_page, screenshot, tenant_admin, wait_for
from tests.browser.tenant_site import TenantSite
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db(transaction=True)

ALLOWED_HOST = "shop.example.test"
REFUSED_HOST = "evil.example.test"  # resolves to the same server: only the origin differs


@database_sync_to_async
def set_allowed_origins(agent: Agent, origins: list[str]) -> None:
    Agent.unscoped.filter(pk=agent.pk).update(allowed_origins=origins)


def end_over_rest(platform_url: str, api_key: str, session_id: str) -> None:
    request = urllib.request.Request(  # noqa: S310 (the test's own platform URL)
        f"{platform_url}/api/v1/sessions/{session_id}/end/",
        headers={"Authorization": f"Bearer {api_key}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert json.loads(response.read())["end_reason"] == "ended_by_api"


WIDGET = "document.querySelector('voice-agent-widget')"


async def admin_snippet(browser, platform_url: str, agent: Agent, username: str, artifacts) -> str:  # type: ignore[no-untyped-def]
    """The snippet exactly as the agent's admin page shows it."""
    page = await admin_login(browser, platform_url, username)
    await page.goto(f"{platform_url}/admin/agents/agent/{agent.pk}/change/")
    assert await page.locator("#try-agent").count() == 1
    snippet = str(await page.inner_text("#widget-snippet-code"))
    await page.locator("#widget-snippet").scroll_into_view_if_needed()
    await screenshot(page, artifacts, "agent-admin-snippet")
    await page.close()
    return snippet


async def test_widget_works_from_an_allowed_origin_and_is_refused_from_another(
    alice, live_emulator, platform_url, launch_browser, artifacts, tmp_path
):
    agent = await database_sync_to_async(AgentFactory)(
        tenant=alice.tenant, response_modality="AUDIO", input_transcription=True,
        output_transcription=True,
    )  # fmt: skip
    user = await tenant_admin(alice.tenant)
    with TenantSite(snippet="", platform_url=platform_url, api_key=alice.api_key) as site:
        site.agent_id = agent.pk
        allowed = f"http://{ALLOWED_HOST}:{site.port}"
        refused = f"http://{REFUSED_HOST}:{site.port}"
        await set_allowed_origins(agent, [allowed])
        mic = write_mic_wav(tmp_path / "mic.wav", [(0.5, 0), (1.0, 440), (3.0, 0)])
        browser = await launch_browser(
            mic,
            f"--host-resolver-rules=MAP {ALLOWED_HOST} 127.0.0.1, MAP {REFUSED_HOST} 127.0.0.1",
            # Microphones and worklets need a secure context; these test sites are plain http.
            f"--unsafely-treat-insecure-origin-as-secure={allowed},{refused}",
        )
        site.snippet = await admin_snippet(browser, platform_url, agent, user.username, artifacts)
        assert 'type="module"' in site.snippet
        assert "<voice-agent-widget" in site.snippet

        # Allowed: the visitor presses the button and talks to the agent.
        page = await new_page(browser)
        await page.goto(allowed + "/")
        await page.click("voice-agent-widget button")
        await wait_for(page, "document.querySelector('voice-agent-widget').state === 'live'")
        await wait_for(
            page,
            "document.querySelector('voice-agent-widget').shadowRoot"
            ".querySelector('.said').textContent.includes('Agent: You said:')",
        )
        assert live_emulator.recorder.last().audio_bytes > 0
        await screenshot(page, artifacts, "widget-allowed-origin")

        # Ended on the server: the visitor is told, and one click starts a new conversation.
        session_id = await page.evaluate(f"{WIDGET}.agent.sessionId")
        await asyncio.to_thread(end_over_rest, platform_url, alice.api_key, session_id)
        await wait_for(page, f"{WIDGET}.state === 'ended' && {WIDGET}.agent === null")
        assert "ended_by_api" in await page.locator("voice-agent-widget .status").inner_text()
        await page.click("voice-agent-widget button")
        await wait_for(page, f"{WIDGET}.state === 'live'")
        assert await page.evaluate(f"{WIDGET}.agent.sessionId") != session_id
        await page.click("voice-agent-widget button")  # End
        await wait_for(page, "document.querySelector('voice-agent-widget').state === 'ended'")
        # Shown at once; released once the server answered `close` (1 s at most).
        await wait_for(page, "__mediaState().contexts.every((c) => c === 'closed')")
        assert len(await page.evaluate("__mediaState().contexts")) == 2
        upstream_connections = len(live_emulator.recorder.sessions)

        # Not allowed: the same snippet on another origin is refused at the handshake.
        page = await new_page(browser)
        await page.goto(refused + "/")
        await page.click("voice-agent-widget button")
        await wait_for(page, "document.querySelector('voice-agent-widget').state === 'refused'")
        widget = page.locator("voice-agent-widget")
        assert await widget.evaluate("(w) => w.closeCode") == 4003
        assert "not allowed" in await page.locator("voice-agent-widget .status").inner_text()
        await screenshot(page, artifacts, "widget-refused-origin")
        assert len(live_emulator.recorder.sessions) == upstream_connections  # no session
        # Every token request carried the page's CSRF cookie back in X-CSRFToken.
        assert site.csrf_refusals == 0
        assert site.tokens_issued == 3
