"""The bare relay baseline: a Channels consumer on Daphne that forwards client audio to a
google-genai Live session and model audio back. No auth, no database, no channel layer,
no logic: what a user could write in an afternoon. Benchmark use only.

    LIVE_API_BASE_URL=https://127.0.0.1:8765 LIVE_API_CA_FILE=var/emulator-certs/cert.pem \\
        .venv/bin/daphne -p 8001 bench.bare_relay:application

Any WebSocket path works. Once the upstream session is up the client gets one text frame
`{"type":"session.started"}` (so the bench can time it like the platform's); after that,
binary frames in are 16 kHz PCM16, binary frames out are the model's audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings_bare_relay")
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter  # noqa: E402
from google import genai  # noqa: E402
from google.genai import types  # noqa: E402
from google.genai.live import AsyncSession  # noqa: E402

AUDIO_MIME = "audio/pcm;rate=16000"
MODEL = os.environ.get("BARE_RELAY_MODEL", "gemini-2.5-flash-native-audio-preview-12-2025")
STARTED = '{"type":"session.started"}'


def make_client() -> genai.Client:
    """The same client setup as sessions/relay/client.py, from the same variables."""
    base_url = os.environ.get("LIVE_API_BASE_URL", "")
    ca_file = os.environ.get("LIVE_API_CA_FILE", "")
    if base_url:
        os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    kwargs: dict[str, Any] = {"api_version": os.environ.get("LIVE_API_VERSION", "v1beta")}
    if base_url:
        kwargs["base_url"] = base_url.rstrip("/")
    if ca_file:
        context = ssl.create_default_context(cafile=ca_file)
        kwargs["async_client_args"] = {"ssl": context, "verify": context}
        kwargs["client_args"] = {"verify": context}
    return genai.Client(
        api_key=os.environ.get("GEMINI_API_KEY", "bench"),
        http_options=types.HttpOptions(**kwargs),
    )


# One client per process, kept referenced (a collected client closes its HTTP session).
_client = make_client()


class BareRelay(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels ships no types
    session: AsyncSession | None = None
    _pump: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        await self.accept()
        self._stack = contextlib.AsyncExitStack()
        config = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO])
        began = time.monotonic()
        try:
            self.session = await self._stack.enter_async_context(
                _client.aio.live.connect(model=MODEL, config=config)
            )
        except Exception:
            await self.close(code=1011)
            return
        upstream_ms = (time.monotonic() - began) * 1000
        self._pump = asyncio.create_task(self._downlink(self.session))
        # The upstream handshake's share of the start (bench/connect_storm.py subtracts it).
        await self.send(text_data=STARTED[:-1] + f',"upstream_ms":{upstream_ms:.2f}}}')

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if bytes_data is not None and self.session is not None:
            await self.session.send_realtime_input(
                audio=types.Blob(data=bytes_data, mime_type=AUDIO_MIME)
            )

    async def _downlink(self, session: AsyncSession) -> None:
        with contextlib.suppress(Exception):
            while True:
                async for message in session.receive():
                    content = message.server_content
                    if content is None or content.model_turn is None:
                        continue
                    for part in content.model_turn.parts or []:
                        if part.inline_data is not None and part.inline_data.data:
                            await self.send(bytes_data=part.inline_data.data)
        await self.close(code=1011)

    async def disconnect(self, code: int) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
        with contextlib.suppress(Exception):
            await self._stack.aclose()


application = ProtocolTypeRouter({"websocket": BareRelay.as_asgi()})
