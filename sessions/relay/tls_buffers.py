"""The one module that tunes asyncio's TLS internals: a 32 KiB read buffer per connection.

asyncio's ``SSLProtocol`` (``asyncio/sslproto.py``, Python 3.11+) allocates and zero-fills a
``max_size`` bytearray, 256 KiB, for every TLS connection, to ``recv()`` ciphertext into:
each Live session's upstream WebSocket paid a quarter of a MiB of resident memory for it,
more than anything else a session holds (docs/memory.md). A Live message is about 4.5 KB
(100 ms of audio in base64 JSON) and a TLS record at most ~16 KiB, so 32 KiB still takes a
record, or a burst of messages, in one ``recv()``; a larger backlog takes a few more reads
of the same total cost (the bytes are copied once either way).

``max_size`` is a class attribute, so the setting is per process: it applies to every
asyncio TLS connection made after it (the Live upstream, and the few HTTPS clients that run
on the event loop). ``shrink_read_buffer()`` sets it once and tries it on a real
``SSLProtocol``; if the installed Python lacks the attribute or does not size its buffer by
it, the default is left (or put back) and every connection keeps 256 KiB: more memory,
same behaviour. ``sessions.relay.client.live_client`` calls it before any Live connection.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from asyncio import sslproto
from dataclasses import dataclass

log = logging.getLogger(__name__)

READ_BUFFER_BYTES = 32 * 1024
VERIFIED_PYTHON = (3, 11)  # the asyncio this module was written and tested against


@dataclass(frozen=True)
class TlsBufferSetting:
    applied: bool
    read_buffer: int  # bytes each TLS connection now reads into
    problem: str = ""  # why not applied, for the log


_setting: TlsBufferSetting | None = None


def shrink_read_buffer(size: int = READ_BUFFER_BYTES) -> TlsBufferSetting:
    """Apply the smaller read buffer (once per process) and return what took effect."""
    global _setting  # a per-process verdict (tests reset it)
    if _setting is None:
        _setting = _apply(size)
        if _setting.problem:
            log.warning(
                "Python %s: %s; TLS connections keep asyncio's %d-byte read buffer",
                ".".join(map(str, sys.version_info[:3])),
                _setting.problem,
                _setting.read_buffer,
            )
        elif sys.version_info[:2] != VERIFIED_PYTHON:
            log.info("tls_buffers verified on Python %s; its probe passed", VERIFIED_PYTHON)
    return _setting


def _apply(size: int) -> TlsBufferSetting:
    cls = getattr(sslproto, "SSLProtocol", None)
    default = getattr(cls, "max_size", None)
    if cls is None or not isinstance(default, int):
        return TlsBufferSetting(False, 0, "asyncio.sslproto.SSLProtocol has no max_size")
    if default <= size:
        return TlsBufferSetting(False, default)  # already small: nothing to do, no problem
    cls.max_size = size
    try:
        problem = _probe(cls, size)
    except Exception as exc:  # any surprise means asyncio is not the one we know
        problem = f"the probe raised {exc!r}"
    if problem:
        cls.max_size = default
        return TlsBufferSetting(False, default, problem)
    return TlsBufferSetting(True, size)


def _probe(cls: type[sslproto.SSLProtocol], size: int) -> str:
    """Empty when a new ``SSLProtocol`` hands its transport a buffer of ``size`` bytes."""
    loop = asyncio.new_event_loop()  # never run: the protocol only keeps a reference
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        waiter = loop.create_future()
        protocol = cls(loop, asyncio.Protocol(), context, waiter, server_hostname="probe")
        given = len(protocol.get_buffer(-1))  # what the transport asks for before a recv
        kept = len(getattr(protocol, "_ssl_buffer", b""))
    finally:
        loop.close()
    if given != size:
        return f"SSLProtocol.get_buffer() gives {given} bytes, not max_size ({size})"
    if kept > size:
        return f"SSLProtocol still allocates {kept} bytes per connection"
    return ""
