"""The one module that reaches into google-genai: ``AsyncSession``'s private socket ``_ws``.

Three things need the socket the SDK keeps no public handle on:

- the audio fast path (``audio_path``): model audio is taken off the socket before the SDK
  parses it, and client audio is written to it as ready-made JSON, skipping pydantic;
- the ping watchdog: a websockets ping notices a black-holed upstream in seconds;
- abort: dropping the TCP transport ends a black-holed connection without a close handshake.

``support()`` tries all of it once on a real ``AsyncSession`` with a stand-in socket, and
``sessions/checks.py`` reports the result at start-up (voice_sessions.E001 / W001). When it
fails, every function here uses the SDK's public methods instead (see docs/sdk-adapter.md).
A session is on the fast path exactly when ``tap_model_audio`` took; everything else asks
that, so one session never mixes the two.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.metadata
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from google import genai
from google.genai import types
from google.genai.live import AsyncSession
from websockets.exceptions import ConnectionClosed

from sessions.relay.audio_path import AUDIO_IN_MIME, AudioTap, OnAudio, realtime_audio_json

log = logging.getLogger(__name__)

VERIFIED_VERSION = "3.6.1"  # the google-genai this module was written and tested against
CLOSE_TIMEOUT = 1.0  # abort without the private socket: how long the public close may take


@dataclass(frozen=True)
class SdkSupport:
    version: str
    internals: bool  # the private socket behaves as this module expects
    problem: str = ""  # why not, for the system check and the log


_support: SdkSupport | None = None


def support(api_client: Any = None) -> SdkSupport:
    """The probe's verdict, computed once per process. ``tap_model_audio`` passes the first
    session's API client: building one costs ~0.2 s, which would stall the event loop."""
    global _support  # a per-process cache (tests reset it)
    if _support is None:
        version = _installed_version()
        try:
            problem = _run_without_loop(_probe(api_client))
        except Exception as exc:  # any surprise means the SDK is not the one we know
            problem = f"the probe raised {exc!r}"
        _support = SdkSupport(version=version, internals=not problem, problem=problem)
        if problem:  # logged once: every session from now on takes the public methods
            log.error(
                "google-genai %s: %s. The audio fast path, ping watchdog and abort use the "
                "SDK's public methods (voice_sessions.E001).",
                version,
                problem,
            )
        elif version != VERIFIED_VERSION:
            log.warning(
                "google-genai %s, sdk_adapter verified against %s (voice_sessions.W001)",
                version,
                VERIFIED_VERSION,
            )
    return _support


def tap_model_audio(session: AsyncSession, on_audio: OnAudio) -> bool:
    """Put the session on the fast path: model audio goes to ``on_audio`` as PCM bytes.

    False (SDK methods only, model audio arrives in ``receive()``) when the SDK failed the
    probe or the session has no socket of ours (a stand-in session in tests).
    """
    if not support(getattr(session, "_api_client", None)).internals:
        return False
    return _install_tap(session, on_audio)


async def send_audio_frame(session: AsyncSession, pcm: bytes) -> None:
    """One 16 kHz PCM frame up: the same text either way, the fast one without pydantic."""
    ws = _tapped_socket(session)
    if ws is not None:
        await ws.send(realtime_audio_json(pcm))
    else:
        await session.send_realtime_input(audio=types.Blob(data=pcm, mime_type=AUDIO_IN_MIME))


def socket_backed_up(session: AsyncSession) -> bool:
    """True when a send could wait for the socket; unknown (public methods) counts as True."""
    transport = getattr(_tapped_socket(session), "transport", None)
    return transport is None or bool(transport.get_write_buffer_size())


def pinger(session: AsyncSession) -> Callable[[], Awaitable[None]] | None:
    """A ping that returns when the pong arrives, or None: the SDK has no public ping, and
    websockets' own keepalive (~40 s to notice a black hole) is then all there is."""
    ws = _tapped_socket(session)
    if ws is None:
        return None

    async def ping() -> None:
        pong = await ws.ping()  # itself waits for the write buffer to drain
        await pong

    return ping


async def abort(session: AsyncSession) -> None:
    """End the connection now: drop the TCP transport, or else a close bounded by
    CLOSE_TIMEOUT (a black hole then holds the socket until websockets' close_timeout, 10 s)."""
    transport = getattr(_tapped_socket(session), "transport", None)
    if transport is not None:
        transport.abort()
        return
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await session.close()
    except (TimeoutError, OSError, ConnectionClosed):
        pass  # best effort: the connection's own context manager finishes the close


# --- SDK internals ------------------------------------------------------------------------


def _tapped_socket(session: AsyncSession) -> AudioTap | None:
    ws = getattr(session, "_ws", None)
    return ws if isinstance(ws, AudioTap) else None


def _install_tap(session: AsyncSession, on_audio: OnAudio) -> bool:
    ws = getattr(session, "_ws", None)
    if ws is None or not hasattr(ws, "recv") or not hasattr(ws, "send"):
        return False
    if not isinstance(ws, AudioTap):
        session._ws = AudioTap(ws, on_audio)  # type: ignore[assignment]
    return True


class _ProbeSocket:
    """Answers at once: records what is sent and replays what the SDK is to receive."""

    def __init__(self, incoming: list[bytes]) -> None:
        self.sent: list[str] = []
        self.incoming = incoming

    async def send(self, message: str) -> None:
        self.sent.append(message)

    async def recv(self, decode: bool | None = None) -> bytes:
        return self.incoming.pop(0)  # IndexError: the SDK read more than one turn


async def _probe(api_client: Any) -> str:
    """Every assumption above, tried on a real ``AsyncSession``: "" when they all hold."""
    pcm = bytes(range(256))
    data = base64.b64encode(pcm).decode()
    audio = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": data}}
    socket = _ProbeSocket([
        json.dumps({"serverContent": {"modelTurn": {"parts": [audio]}}}).encode(),
        b'{"serverContent": {"turnComplete": true}}',
    ])  # fmt: skip
    if api_client is None:  # never connects: AsyncSession only reads its settings
        api_client = genai.Client(api_key="sdk-adapter-probe", vertexai=False)._api_client
    session = AsyncSession(api_client=api_client, websocket=socket)  # type: ignore[arg-type]
    if getattr(session, "_ws", None) is not socket:
        return "AsyncSession no longer keeps its socket at _ws"
    await session.send_realtime_input(audio=types.Blob(data=pcm, mime_type=AUDIO_IN_MIME))
    if socket.sent != [realtime_audio_json(pcm)]:
        return "send_realtime_input(audio=...) no longer writes realtime_audio_json() to _ws"
    heard: list[bytes] = []

    async def on_audio(chunk: bytes) -> None:
        heard.append(chunk)

    _install_tap(session, on_audio)
    messages = [message async for message in session.receive()]
    turn_done = [bool(m.server_content and m.server_content.turn_complete) for m in messages]
    if heard != [pcm] or turn_done != [True]:
        return "receive() no longer reads its messages through _ws.recv"
    return ""


def _run_without_loop(coroutine: Coroutine[Any, Any, str]) -> str:
    """Run a coroutine that never suspends (the probe socket answers at once) by hand, so the
    probe works the same from a system check and from inside the running event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return str(done.value)
    coroutine.close()
    return "the SDK waited on a socket that answers at once"


def _installed_version() -> str:
    try:
        return importlib.metadata.version("google-genai")
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(genai, "__version__", "unknown"))
