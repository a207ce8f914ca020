"""`playback.started` from the Python client: the once-per-reply rule, LiveSession sending it
only on a live connection, and the console reporting each spoken reply (a scripted server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.server import ServerConnection, serve

from tests.sessions.conftest import assert_protocol
from voice_client import cli, protocol
from voice_client.playback import PlaybackReporter
from voice_client.session import LiveSession

AUDIO = b"\x01\x00" * 2400  # 100 ms of 24 kHz PCM16


def event(kind: str) -> protocol.Event:
    return protocol.parse_event(json.dumps({"type": kind}))


def reports(items: list[Any]) -> list[int]:
    """The positions of ``items`` at which a reporter fed them all says to report."""
    reporter = PlaybackReporter()
    return [n for n, item in enumerate(items) if reporter.take(item)]


def test_reporter_reports_the_first_audio_of_a_reply_only():
    items = [event("transcript.output"), AUDIO, AUDIO, event("usage"), AUDIO]
    assert reports(items) == [1]


@pytest.mark.parametrize("boundary", ["turn_complete", "interrupted", "session.started"])
def test_reporter_starts_a_new_reply_after_each_boundary(boundary):
    assert reports([AUDIO, AUDIO, event(boundary), AUDIO, AUDIO]) == [0, 3]


def test_reporter_says_nothing_for_a_reply_without_audio():
    items = [event("text"), event("turn_complete"), event("text"), b"", event("turn_complete")]
    assert reports(items) == []
    assert reports([event("turn_complete"), event("interrupted"), AUDIO]) == [2]


def test_reporter_for_a_buffered_player_follows_what_it_plays_not_what_arrived():
    reporter = PlaybackReporter()
    reporter.reply_ended()  # the reply's turn_complete came before its audio played
    assert reporter.started() is True
    assert reporter.started() is False  # a chunk after an underrun: the same reply
    reporter.reply_ended()
    assert reporter.started() is True
    assert reporter.reports == 2


@pytest_asyncio.fixture
async def speaking_server() -> AsyncIterator[dict[str, Any]]:
    """A fake platform: session.started (AUDIO); on the first text, a reply cut off by a
    barge-in and a second reply; answers `close`. ``state["texts"]``: the client's types."""
    state: dict[str, Any] = {"texts": [], "port": 0}

    async def handle(ws: ServerConnection) -> None:
        await ws.send(
            json.dumps(
                {"type": "session.started", "session_id": "s-1", "resume_token": "rt_1",
                 "agent": {"id": 1, "name": "A", "response_modality": "AUDIO"},
                 "audio": {"input_rate": 16000, "output_rate": 24000}}
            )
        )  # fmt: skip
        async for message in ws:
            frame = json.loads(message)
            assert_protocol(frame, "clientMessage")
            state["texts"].append(frame["type"])
            if frame["type"] == "text":
                for item in (AUDIO, AUDIO, {"type": "interrupted"}, AUDIO, AUDIO):
                    await ws.send(item if isinstance(item, bytes) else json.dumps(item))
                await asyncio.sleep(0.05)  # the console's reports go out before the end
                await ws.send(json.dumps({"type": "turn_complete"}))
            elif frame["type"] == "close":
                await ws.send(json.dumps({"type": "session.ended", "reason": "client_closed"}))
                await ws.close(1000)

    async with serve(handle, "127.0.0.1", 0) as running:
        state["port"] = running.sockets[0].getsockname()[1]
        yield state


@pytest.mark.parametrize(("flags", "expected"), [(["--playback-report"], 2), ([], 0)])
async def test_console_reports_each_spoken_reply_once(speaking_server, flags, expected):
    url = f"ws://127.0.0.1:{speaking_server['port']}"
    argv = ["talk", "--url", url, "--token", "ct_x", "--text", "hi", "--quiet", *flags]
    assert await asyncio.to_thread(cli.main, argv) == 0
    assert speaking_server["texts"] == ["text"] + ["playback.started"] * expected + ["close"]


async def test_session_sends_a_report_only_on_a_live_connection(speaking_server):
    session = LiveSession(f"ws://127.0.0.1:{speaking_server['port']}", "ct_x")
    assert await session.playback_started() is False  # not connected yet
    await session.start()
    assert await session.playback_started() is True
    await session.close()
    assert await session.playback_started() is False  # closing: nothing more is sent
    assert speaking_server["texts"] == ["playback.started", "close"]
