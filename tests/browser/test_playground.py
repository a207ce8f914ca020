"""The playground in headless Chromium: speak through a fake microphone, hear the reply,
barge in, survive a killed upstream, close cleanly. Real Daphne, real emulator."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from channels.db import database_sync_to_async

from sessions.models import VoiceSession
from tests.browser.conftest import running_platform, write_mic_wav
from tests.browser.pages import (
    events,
    heard,
    open_playground,
    screenshot,
    tenant_admin,
    transcript,
    wait_for,
)
from tests.factories import AgentFactory
from tools.services import agent_tool_create, tool_sync_registry
from voice_platform.tenancy.scope import tenant_scope

pytestmark = pytest.mark.django_db(transaction=True)


async def emulator_audio_at_least(live_emulator, seconds: float) -> float:  # type: ignore[no-untyped-def]
    """The model service's received audio once it reached ``seconds`` (the bridge forwards
    client audio as it comes, so this is quick)."""
    async with asyncio.timeout(5):
        while (received := live_emulator.recorder.last().audio_seconds) < seconds - 1e-6:
            await asyncio.sleep(0.01)
    return float(received)


TURN_ENDS = "playground.events.filter((e) => e.type === 'turnComplete').length >= {n}"
# Records the type of every JSON message the page sends, below the SDK.
SENT_SPY = """() => {
  window.__sent = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (typeof data === "string") window.__sent.push(JSON.parse(data).type);
    return send.call(this, data);
  };
}"""


@database_sync_to_async
def audio_agent(tenant, **fields):  # type: ignore[no-untyped-def]
    return AgentFactory(
        tenant=tenant, response_modality="AUDIO", input_transcription=True,
        output_transcription=True, **fields,
    )  # fmt: skip


async def test_speak_hear_barge_in_and_close(
    alice, live_emulator, platform_url, launch_browser, artifacts, tmp_path
):
    agent = await audio_agent(alice.tenant)
    user = await tenant_admin(alice.tenant)
    # The microphone: a 2.0 s turn; silence while the reply (2.0 s) plays out; a 3.0 s turn;
    # 1.1 s after it ends (the reply is streaming then), 0.6 s at another pitch: a barge-in.
    mic = write_mic_wav(
        tmp_path / "mic.wav",
        [(0.4, 0), (2.0, 440), (4.0, 0), (3.0, 440), (1.1, 0), (0.6, 660), (2.9, 0)],
    )
    browser = await launch_browser(mic)
    page = await open_playground(browser, platform_url, agent.pk, user.username, "?processing=off")
    await page.evaluate(SENT_SPY)
    await page.click("#start")
    await wait_for(page, "playground.events.some((e) => e.type === 'sessionStarted')")
    # The level meter follows the microphone: up while the tone plays (0.35 RMS, shown x4)...
    await wait_for(page, "document.getElementById('level').value > 0.5")

    # Turn 1: what the emulator heard is 2.0 s at 440 Hz, so the worklet's 16 kHz is right
    # (a wrong rate changes both the duration and the pitch).
    await wait_for(page, TURN_ENDS.format(n=1), timeout=20)
    # ... and down in the silence after it.
    await wait_for(page, "document.getElementById('level').value < 0.05")
    assert await page.evaluate(heard(2.0, 440))
    said = await transcript(page, "user")
    assert f"You said: {said}" in await transcript(page, "model")
    assert f"Agent: You said: {said}" in await page.inner_text("#transcript")
    # The reply played out: every chunk started exactly where the previous one ended.
    await wait_for(
        page,
        "(() => { const s = playground.agent.debugState(); const runs = s.stats.playback.runs;"
        " return runs.length >= 1 && s.contextTime > runs[0].end; })()",
    )
    state = await page.evaluate("playground.agent.debugState()")
    first = state["stats"]["playback"]["runs"][0]
    assert first["gaps"] == 0
    assert first["buffers"] > 10
    assert 1.8 <= first["end"] - first["start"] <= 2.4  # the echo of 2.0 s of speech
    chunks = state["stats"]["playback"]["schedule"][: first["buffers"]]
    assert all(abs(b[0] - a[1]) < 1e-9 for a, b in itertools.pairwise(chunks))
    await screenshot(page, artifacts, "playground-after-first-turn")

    # The barge-in: playback stopped the moment `interrupted` came, with audio still queued.
    await wait_for(page, "playground.events.some((e) => e.type === 'interrupted')", timeout=20)
    [at_interrupt] = await events(page, "interrupted")
    assert at_interrupt["queuedBuffers"] == 0
    assert at_interrupt["queuedSeconds"] == 0
    stop = at_interrupt["stats"]["playback"]["stops"][-1]
    assert stop["stopped"] > 0
    assert stop["queuedSeconds"] > 0.1
    # The interrupting speech is the next turn, and it is answered.
    await wait_for(page, heard(0.6, 660), timeout=15)
    await wait_for(page, TURN_ENDS.format(n=3), timeout=15)
    await screenshot(page, artifacts, "playground-after-barge-in")

    # Audio in: what the SDK counts as sent is what the model service received (read
    # between two readings of the SDK's counter, as the microphone keeps going), and the
    # SDK sent what the microphone gave over the time it ran, at 16 kHz.
    sent_before = await page.evaluate("playground.agent.stats.secondsSent")
    received = await emulator_audio_at_least(live_emulator, sent_before)
    stats = await page.evaluate("playground.agent.stats")
    elapsed = await page.evaluate("(performance.now() - __media.micStartedAt) / 1000")
    assert len(live_emulator.recorder.sessions) == 1
    assert sent_before - 1e-6 <= received <= stats["secondsSent"] + 1e-6
    assert abs(stats["secondsCaptured"] - elapsed) <= max(0.5, 0.05 * elapsed)
    assert stats["secondsSent"] > 10
    assert stats["framesDropped"] == 0

    # close(): no live track, no open AudioContext, no socket; the session ended.
    session_id = await page.evaluate("playground.agent.sessionId")
    await page.click("#stop")
    await wait_for(page, "playground.agent.state === 'closed' && playground.agent.socket === null")
    media = await page.evaluate("__mediaState()")
    assert media["tracks"]
    assert set(media["tracks"]) == {"ended"}
    assert media["contexts"]
    assert set(media["contexts"]) == {"closed"}
    assert media["sockets"]
    assert set(media["sockets"]) == {3}  # CLOSED
    session = await database_sync_to_async(VoiceSession.unscoped.get)(pk=session_id)
    assert session.end_reason == "client_closed"
    assert session.interruptions == 1

    # playback.started: once per reply that played, and the server timed each turn's
    # voice-to-voice latency as heard from it (after the reply was sent, by the jitter
    # buffer and the way back at least).
    sent = await page.evaluate("window.__sent")
    reports = sent.count("playback.started")
    heard_turns = [t for t in session.turn_timings if t["playback_ms"] is not None]
    assert reports == await page.evaluate("playground.agent.stats.playbackReports")
    assert reports == len(heard_turns), (sent, session.turn_timings)
    assert reports >= 2  # the first reply and the barge-in's, at least
    assert session.turn_timings[0]["playback_ms"] is not None
    for timing in heard_turns:
        assert timing["playback_ms"] >= timing["reply_out_ms"] + 50, session.turn_timings

    # The link to the stored session opens its admin page.
    link = await page.get_attribute("#session-link a", "href")
    assert session_id in link
    await page.click("#session-link a")
    await page.wait_for_load_state()
    assert session_id in await page.content()
    await screenshot(page, artifacts, "playground-stored-session")


async def test_killed_upstream_mid_reply_resumes_without_a_reload(
    alice, live_emulator, upstream_proxy, platform_url, launch_browser, artifacts, tmp_path
):
    agent = await audio_agent(alice.tenant)
    user = await tenant_admin(alice.tenant)
    # A 2.0 s turn whose reply is cut by the drop (the platform asks it again), then, once
    # that is answered, a second turn at another pitch: the conversation goes on.
    mic = write_mic_wav(
        tmp_path / "mic.wav", [(0.4, 0), (2.0, 440), (7.0, 0), (1.0, 660), (3.0, 0)]
    )
    browser = await launch_browser(mic)
    page = await open_playground(browser, platform_url, agent.pk, user.username, "?processing=off")
    await page.evaluate("window.__samePage = true")
    await page.click("#start")
    await wait_for(page, "playground.events.some((e) => e.type === 'sessionStarted')")
    session_id = await page.evaluate("playground.agent.sessionId")

    # Mid-reply: the first chunks of the answer are here, the rest is still coming.
    await wait_for(page, "playground.agent.stats.audioChunksReceived >= 3", timeout=20)
    assert await page.evaluate("playground.events.some((e) => e.type === 'turnComplete')") is False
    assert upstream_proxy.drop() >= 1

    await wait_for(
        page, "playground.events.some((e) => e.type === 'resumed' && e.detail.source === 'server')"
    )
    [reconnecting] = [e for e in await events(page, "reconnecting") if e["source"] == "server"]
    assert reconnecting["reason"]
    await wait_for(page, heard(1.0, 660), timeout=20)
    await wait_for(page, "playground.turns.length >= 2", timeout=15)
    assert await page.evaluate("window.__samePage") is True  # no reload
    assert await page.evaluate("playground.agent.sessionId") == session_id
    # A new upstream connection (a fresh one, told the conversation: no turn was complete,
    # so no resumption handle had come yet).
    assert len(live_emulator.recorder.sessions) >= 2
    await screenshot(page, artifacts, "playground-after-upstream-drop")

    # The client's own connection lost: the SDK resumes with the resume token (backoff).
    await page.evaluate("playground.agent.debugDropConnection()")
    await wait_for(
        page, "playground.events.some((e) => e.type === 'resumed' && e.detail.source === 'client')"
    )
    assert await page.evaluate("playground.agent.sessionId") == session_id
    assert await page.evaluate("playground.agent.stats.reconnects") == 1
    await page.evaluate("playground.agent.close()")
    session = await database_sync_to_async(VoiceSession.unscoped.get)(pk=session_id)
    assert session.reconnects >= 1


@database_sync_to_async
def text_agent_with_a_tool(tenant):  # type: ignore[no-untyped-def]
    tool_sync_registry()
    agent = AgentFactory(tenant=tenant, response_modality="TEXT")
    with tenant_scope(tenant.pk):
        agent_tool_create(tenant=tenant, agent=agent, tool_name="get_current_time")
    return agent


@pytest.fixture
def platform_with_tools(live_emulator, upstream_proxy, celery_worker_process, settings, tmp_path):  # type: ignore[no-untyped-def]
    """The platform, its tool calls run by this test's own Celery worker."""
    queue = settings.TOOL_CELERY_QUEUE
    with running_platform(live_emulator, upstream_proxy, tmp_path, TOOL_CELERY_QUEUE=queue) as url:
        yield url


async def test_text_box_and_tool_calls_of_a_text_agent(
    alice, live_emulator, platform_with_tools, launch_browser, artifacts
):
    agent = await text_agent_with_a_tool(alice.tenant)
    user = await tenant_admin(alice.tenant)
    browser = await launch_browser(None)
    page = await open_playground(browser, platform_with_tools, agent.pk, user.username)
    await page.uncheck("#use-mic")
    await page.click("#start")
    await wait_for(page, "playground.events.some((e) => e.type === 'sessionStarted')")
    await page.fill("#text", "hello from the text box")
    await page.click("#send")
    await wait_for(page, TURN_ENDS.format(n=1))
    assert "You said: hello from the text box" in await page.inner_text("#transcript")
    # Usage and latency of the turn, in the table.
    cells = await page.locator("#turns tbody tr").first.locator("td").all_inner_texts()
    assert cells[0] == "1"
    assert int(cells[1]) >= 0
    assert int(cells[4]) > 0
    assert "hello from the text box" in live_emulator.recorder.last().texts

    # A tool call, shown as it starts and as it finishes.
    await page.fill("#text", 'call get_current_time {"timezone": "Europe/Berlin"}')
    await page.click("#send")
    await wait_for(page, TURN_ENDS.format(n=2), timeout=20)
    tools = await events(page, "tool")
    assert [(t["phase"], t["name"]) for t in tools] == [
        ("started", "get_current_time"),
        ("finished", "get_current_time"),
    ]
    assert tools[1]["status"] == "ok"
    assert await page.inner_text("#tools") == "get_current_time: ok"
    assert "Result of get_current_time" in await page.inner_text("#transcript")
    await screenshot(page, artifacts, "playground-text-agent")
    await page.click("#stop")
    await wait_for(page, "playground.agent.state === 'closed'")
