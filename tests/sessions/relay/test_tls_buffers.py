"""The TLS read buffer: 32 KiB per connection when asyncio sizes it as we expect, asyncio's
own default otherwise; either way the bytes arrive intact."""

from __future__ import annotations

import asyncio
import logging
import os
from asyncio import sslproto
from pathlib import Path

import pytest
from google.genai import types

from sessions.relay import tls_buffers
from sessions.relay.client import live_client
from voice_platform.live_emulator.certs import (
    client_ssl_context,
    ensure_cert,
    server_ssl_context,
)
from voice_platform.live_emulator.testing import RunningEmulator

DEFAULT = 256 * 1024  # asyncio's max_size on the Python this was written for
MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"


@pytest.fixture(autouse=True)
def asyncio_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts from asyncio's own setting; the process's comes back afterwards."""
    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", DEFAULT)
    monkeypatch.setattr(tls_buffers, "_setting", None)


def read_buffer_of(transport: asyncio.BaseTransport) -> int:
    """How many bytes the connection's TLS layer hands its socket to recv() into."""
    protocol = transport._ssl_protocol  # type: ignore[attr-defined]
    return len(protocol.get_buffer(-1))


async def tls_transfer(cert_dir: Path, payload: bytes) -> tuple[bytes, int]:
    """``payload`` from a local TLS server to a client; what arrived, and the client's
    read buffer size."""
    cert, key = ensure_cert(cert_dir)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ssl_context(cert, key))
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ssl_context(cert), server_hostname="127.0.0.1"
        )
        size = read_buffer_of(writer.transport)
        received = await reader.read()  # to EOF
        writer.close()
        return received, size
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_a_tls_connection_reads_a_large_burst_intact_through_32_kib(
    tmp_path: Path,
) -> None:
    setting = tls_buffers.shrink_read_buffer()
    assert setting == tls_buffers.TlsBufferSetting(True, 32 * 1024)
    payload = os.urandom(3 * 1024 * 1024)  # many times the buffer, in one write
    received, size = await tls_transfer(tmp_path, payload)
    assert size == 32 * 1024
    assert received == payload


@pytest.mark.asyncio
async def test_without_the_setting_connections_keep_asyncios_buffer(tmp_path: Path) -> None:
    received, size = await tls_transfer(tmp_path, b"x" * 100_000)
    assert size == DEFAULT
    assert received == b"x" * 100_000


def test_an_asyncio_without_max_size_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delattr(sslproto.SSLProtocol, "max_size")
    with caplog.at_level(logging.WARNING, logger="sessions.relay.tls_buffers"):
        setting = tls_buffers.shrink_read_buffer()
    assert not setting.applied
    assert "no max_size" in setting.problem
    assert "max_size" not in vars(sslproto.SSLProtocol)
    assert "keep asyncio's" in caplog.text


@pytest.mark.asyncio
async def test_a_failed_probe_puts_asyncios_default_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An asyncio whose buffer no longer follows max_size: nothing is changed."""

    def fixed_buffer(self: sslproto.SSLProtocol, n: int) -> memoryview:
        if len(self._ssl_buffer) < DEFAULT:  # asyncio's own code, sized by a constant
            self._ssl_buffer = bytearray(DEFAULT)
            self._ssl_buffer_view = memoryview(self._ssl_buffer)
        return self._ssl_buffer_view

    monkeypatch.setattr(sslproto.SSLProtocol, "get_buffer", fixed_buffer)
    setting = tls_buffers.shrink_read_buffer()
    assert setting.applied is False
    assert "get_buffer() gives 262144 bytes" in setting.problem
    assert sslproto.SSLProtocol.max_size == DEFAULT
    received, _ = await tls_transfer(tmp_path, b"y" * 50_000)
    assert received == b"y" * 50_000


def test_the_setting_is_decided_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    first = tls_buffers.shrink_read_buffer()
    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", DEFAULT)  # as if someone undid it
    assert tls_buffers.shrink_read_buffer() is first


@pytest.mark.asyncio
async def test_a_live_session_from_live_client_reads_through_32_kib(
    live_emulator: RunningEmulator,
) -> None:
    client = live_client(
        "tls-buffers-test", live_emulator.base_url, "v1beta", str(live_emulator.cert_path)
    )
    config = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO])
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        assert read_buffer_of(session._ws.transport) == 32 * 1024
