"""Ending a socket at a deadline, whatever call is blocked on it.

A socket timeout bounds each ``recv``/``send``, not the exchange: a peer that trickles one
byte a second never trips a 3 s read timeout, and keeps the reading thread for as long as it
likes. Webhook calls therefore arm a deadline on their socket: at the deadline one
watchdog thread (per process, started on first use) shuts the connection down, and the
blocked TLS handshake, send, header or body read returns at once with an error or
end-of-file. The caller asks ``disarm`` whether the deadline fired and reports a timeout.

The watchdog shuts down a duplicate of the socket's descriptor: a shutdown acts on the
connection, not on one descriptor, so it reaches the socket even after ``ssl`` wrapped it
(wrapping detaches the original socket object).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass(eq=False)
class Deadline:
    """One armed deadline; ``fired`` once the watchdog shut its connection down."""

    at: float  # time.monotonic()
    sock: socket.socket = field(repr=False)  # a duplicate: closing it leaves the caller's
    fired: bool = False
    done: bool = False


class SocketDeadlines:
    """One thread for every armed socket of the process, sleeping until the next deadline."""

    def __init__(self) -> None:
        self._reset()
        # A forked Celery worker inherits neither the thread nor a safe lock: start over.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, sock: socket.socket, at: float) -> Deadline:
        """Shut ``sock``'s connection down at ``at`` (monotonic) unless disarmed first."""
        deadline = Deadline(at=at, sock=sock.dup())
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="socket-deadlines", daemon=True
                )
                self._thread.start()
            heapq.heappush(self._heap, (at, next(self._seq), deadline))
            self._cond.notify()
        return deadline

    def disarm(self, deadline: Deadline) -> bool:
        """Stop watching; True if the deadline had fired (the exchange was cut short)."""
        with self._cond:  # the watchdog shuts down under the same lock: never after close
            deadline.done = True
            fired = deadline.fired
        deadline.sock.close()
        return fired

    def pending(self) -> int:
        """Armed deadlines not yet disarmed (tests: nothing is left behind)."""
        with self._cond:
            return sum(1 for _, _, item in self._heap if not item.done)

    def _run(self) -> None:
        while True:
            with self._cond:
                # Disarmed entries are dropped lazily, once they reach the head.
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                _, _, deadline = heapq.heappop(self._heap)
                deadline.fired = True
                # OSError: already closed by the peer, so nothing is blocked on it any more.
                with contextlib.suppress(OSError):
                    deadline.sock.shutdown(socket.SHUT_RDWR)


socket_deadlines = SocketDeadlines()
