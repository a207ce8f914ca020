"""Helpers for browser tests: a signed-in staff page of the playground, and waiting on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from channels.db import database_sync_to_async

from tests.browser.conftest import MEDIA_SPY
from tests.factories import MembershipFactory
from voice_platform.tenancy.models import Tenant


@database_sync_to_async
def tenant_admin(tenant: Tenant, username: str = "alice-admin") -> Any:
    """A staff user with the admin role in ``tenant`` (password "pw")."""
    return MembershipFactory(tenant=tenant, user__username=username).user


async def new_page(browser: Any, console: list[str] | None = None) -> Any:
    context = await browser.new_context()
    await context.add_init_script(MEDIA_SPY)
    page = await context.new_page()
    log = console if console is not None else []
    page.on("console", lambda message: log.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: log.append(f"pageerror: {error}"))
    return page


async def open_playground(
    browser: Any, platform_url: str, agent_id: int, username: str, query: str = ""
) -> Any:
    page = await admin_login(browser, platform_url, username)
    await page.goto(f"{platform_url}/playground/agents/{agent_id}/{query}")
    return page


async def admin_login(browser: Any, platform_url: str, username: str) -> Any:
    """A new page logged in to the admin as ``username`` (every test user's password: pw)."""
    page = await new_page(browser)
    await page.goto(f"{platform_url}/admin/login/")
    await page.fill("#id_username", username)
    await page.fill("#id_password", "pw")
    await page.click("input[type=submit]")
    await page.wait_for_url(f"{platform_url}/admin/")
    return page


async def wait_for(page: Any, predicate: str, timeout: float = 15) -> Any:
    """Wait until the JavaScript expression is truthy; its value. On timeout the failure
    shows what the playground recorded."""
    try:
        handle = await page.wait_for_function(predicate, timeout=timeout * 1000)
    except Exception as exc:
        events = await page.evaluate("window.playground ? playground.events : null")
        raise AssertionError(
            f"not within {timeout} s: {predicate}\nevents: {json.dumps(events)[-4000:]}"
        ) from exc
    return await handle.json_value()


async def events(page: Any, kind: str) -> list[Any]:
    return list(
        await page.evaluate(
            "(k) => playground.events.filter((e) => e.type === k).map((e) => e.detail)", kind
        )
    )


async def transcript(page: Any, role: str) -> str:
    return "".join(e["text"] for e in await events(page, "transcript") if e["role"] == role)


def heard(seconds: float, hz: float) -> str:
    """A JavaScript predicate: the user's transcript has a turn the emulator described as
    about ``seconds`` long at about ``hz`` (it describes audio as "[2.0 s at 440 Hz]").

    About: the emulator's pitch is zero crossings over the turn's length, and the length
    its VAD measured may hold a frame of silence more (a short turn reads ~12 % low); under
    load Chromium's fake microphone is also time-stretched by a few per cent on its way into
    the AudioContext (clock-drift correction). A wrong sample rate in the SDK would be off
    by a factor of 2.75 or 3."""
    return (
        "playground.events.some((e) => { if (e.type !== 'transcript' || e.detail.role !== 'user')"
        " return false; const m = /\\[([\\d.]+) s at (\\d+) Hz\\]/.exec(e.detail.text);"
        f" return m && Math.abs(m[1] - {seconds}) <= {0.1 * seconds + 0.15}"
        f" && Math.abs(m[2] - {hz}) <= {0.2 * hz}; }})"
    )


async def screenshot(page: Any, artifacts: Path, name: str) -> Path:
    path = artifacts / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
