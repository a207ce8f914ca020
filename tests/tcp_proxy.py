"""A TCP proxy for fault tests: what the network between the platform and Gemini (or its
database) can do.

    async with TcpProxy("127.0.0.1", upstream_port) as proxy:
        settings.LIVE_API_BASE_URL = proxy.base_url   # https://127.0.0.1:<proxy port>
        proxy.latency = 0.15     # every byte arrives 150 ms later, each way
        proxy.drop()             # every open connection reset, both sides (RST)
        proxy.black_hole()       # open connections swallow everything, sockets stay open
        proxy.shut()             # reset all, refuse new ones (a failed-over database) ...
        proxy.reopen()           # ... until it is back

It forwards bytes and knows nothing of TLS or WebSockets, so the SDK's `wss` handshake
goes through unchanged: the certificate is checked against the host name of the URL, and
127.0.0.1 is in the emulator's. `drop()` and `black_hole()` act on the connections open at
that moment; a reconnect opens a new, healthy one (as after a real network fault).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

CHUNK = 65_536


@dataclass
class Link:
    """One proxied connection: the client's side and the upstream side."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    black_holed: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    swallowed: int = 0  # bytes received while black-holed, forwarded nowhere


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST, as a dead middlebox or a crashed peer does (no FIN, no close frame)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Listens on 127.0.0.1 (a free port) and forwards each connection to the upstream."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host, self.upstream_port = upstream_host, upstream_port
        self.latency = 0.0  # seconds added to every chunk, in each direction
        self.links: list[Link] = []
        self.connections = 0  # accepted since start
        self.bytes_forwarded = 0
        self.refusing = False
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def open_links(self) -> list[Link]:
        return [link for link in self.links if not link.client.is_closing()]

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self.links:
            for writer in (link.client, link.upstream):
                writer.transport.abort()
            for task in link.tasks:
                task.cancel()
        tasks = [task for link in self.links for task in link.tasks]
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def drop(self) -> int:
        """Reset every open connection on both sides; returns how many."""
        links = self.open_links
        for link in links:
            _reset(link.client)
            _reset(link.upstream)
        return len(links)

    def shut(self) -> int:
        """Reset every open connection and refuse new ones (accepted, then reset at once), as
        a restarting or failed-over server does, until ``reopen()``. Returns how many."""
        self.refusing = True
        return self.drop()

    def reopen(self) -> None:
        self.refusing = False

    def black_hole(self) -> int:
        """From now on, open connections read and discard everything, both ways, and never
        close: to each side its peer went silent. Returns how many."""
        links = self.open_links
        for link in links:
            link.black_holed = True
        return len(links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.refusing:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            _reset(writer)
            return
        link = Link(client=writer, upstream=up_writer)
        self.links.append(link)
        link.tasks = [
            asyncio.create_task(self._pump(link, reader, up_writer), name="tcp-proxy-up"),
            asyncio.create_task(self._pump(link, up_reader, writer), name="tcp-proxy-down"),
        ]

    async def _pump(
        self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Copy one direction. With latency, chunks wait in a line (order kept, throughput
        not throttled: each is delayed, not the reading)."""
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.create_task(self._deliver(line, writer, link))
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(CHUNK):
                if link.black_holed:
                    link.swallowed += len(data)
                    continue
                line.put_nowait((loop.time() + self.latency, data))
        except (ConnectionError, OSError):
            pass
        finally:
            if not link.black_holed:
                # The peer closed (or reset): pass that on once the line has drained.
                line.put_nowait((loop.time() + self.latency, b""))
                with contextlib.suppress(Exception):
                    await sender
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    async def _deliver(
        self, line: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter, link: Link
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, data = await line.get()
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            if link.black_holed:
                continue  # already in the line when the hole opened: swallowed too
            if not data:
                with contextlib.suppress(OSError):
                    writer.close()
                return
            try:
                writer.write(data)
                await writer.drain()
            except (ConnectionError, OSError):
                return
            self.bytes_forwarded += len(data)

    def stats(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "open": len(self.open_links),
            "bytes_forwarded": self.bytes_forwarded,
            "swallowed": sum(link.swallowed for link in self.links),
        }
