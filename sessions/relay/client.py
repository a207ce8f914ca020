"""google-genai clients for the configured Live endpoint (Google or the emulator)."""

from __future__ import annotations

import os
import ssl
from functools import lru_cache

from google import genai
from google.genai import types

from sessions.relay import tls_buffers


@lru_cache(maxsize=64)
def _ssl_context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


@lru_cache(maxsize=64)
def live_client(
    api_key: str,
    base_url: str,
    api_version: str,
    ca_file: str,
    *,
    deflate: bool = False,
    keepalive: tuple[float, float] | None = None,
) -> genai.Client:
    """One cached client per key and endpoint (kept referenced: a collected client closes
    its HTTP session under a running request).

    Without ``deflate`` the Live WebSocket does not offer permessage-deflate. The SDK passes
    each ``async_client_args`` entry that ``websockets.connect`` accepts on to it (and
    filters them out for its HTTP clients), so ``compression=None`` and the keepalive
    (``ping_interval``/``ping_timeout``) reach the connect.
    """
    # Before any Live connection: 32 KiB instead of 256 KiB of TLS read buffer per session.
    tls_buffers.shrink_read_buffer()
    if base_url:
        # The SDK's websocket honours HTTPS_PROXY; a local endpoint must bypass it.
        os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    kwargs: dict[str, object] = {"api_version": api_version}
    if base_url:
        kwargs["base_url"] = base_url.rstrip("/")
    async_args: dict[str, object] = {} if deflate else {"compression": None}
    if keepalive is not None:
        # websockets' keepalive, explicit: its default (20 s to a pong) ends healthy Gemini
        # sessions, whose pongs take up to 30 s. A black hole is ours to notice sooner.
        async_args["ping_interval"], async_args["ping_timeout"] = keepalive
    if ca_file:
        context = _ssl_context(ca_file)
        async_args.update({"ssl": context, "verify": context})
        kwargs["client_args"] = {"verify": context}
    if async_args:
        kwargs["async_client_args"] = async_args
    return genai.Client(api_key=api_key, http_options=types.HttpOptions(**kwargs))  # type: ignore[arg-type]
