"""SIGTERM drains the process's sessions before the server stops (a deploy, a scale-in).

Daphne stops on SIGTERM by closing every socket, and only then cancels the applications:
clients saw their connection drop with no close frame (1006) and the turn in flight was
lost from the model's history. Here SIGTERM first takes the process out of the balancer
(``/readyz`` answers 503 ``draining``; new connections are refused with 4012) and, after
``LIVE_SHUTDOWN_READY_DELAY`` seconds for the balancer to notice, hands every live session
over: each keeps its turn in flight for replay, records its detach (resumable), tells its
client ``session.ended`` ``server_restart`` and closes with 4012, all within
``LIVE_SHUTDOWN_GRACE`` seconds. Then the server's own SIGTERM handler runs, as before.
Whatever still holds the process (a database that stopped answering, a tool thread) cannot
keep it past the delay, the grace and ``EXIT_MARGIN``: it is then ended
(docs/rolling-restarts.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import signal
import threading
import weakref
from types import FrameType
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from sessions.bridge import LiveBridge

log = logging.getLogger(__name__)
# Daphne's own shutdown after the hand-over (cancelling the applications, closing sockets,
# joining worker threads) gets this long before the process is ended regardless.
EXIT_MARGIN = 5.0
# A hand-over past the grace is cancelled; its client's close gets this long.
CLOSE_WAIT = 1.0
# Each bridge with its connection's context (its tenant scope): the hand-over runs in it.
_bridges: weakref.WeakKeyDictionary[LiveBridge, contextvars.Context] = weakref.WeakKeyDictionary()
_installed_on: asyncio.AbstractEventLoop | None = None
_draining = False


def draining() -> bool:
    """Whether this process is handing its sessions over before it stops."""
    return _draining


def exit_deadline() -> float:
    """Seconds from SIGTERM to the latest exit: the orchestrator's stop timeout must exceed it."""
    delay, grace = settings.LIVE_SHUTDOWN_READY_DELAY, settings.LIVE_SHUTDOWN_GRACE
    return float(delay) + float(grace) + EXIT_MARGIN


def shutdown_track(bridge: LiveBridge) -> None:
    """Hand ``bridge`` over when the process is told to stop; installs the handler once."""
    global _installed_on
    _bridges[bridge] = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    if _installed_on is loop:
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm_factory(loop, previous))
    except ValueError:  # not the main thread (a test's in-process loop): nothing to drain
        return
    _installed_on = loop


def _on_sigterm_factory(loop: asyncio.AbstractEventLoop, previous: Any) -> Any:
    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        global _draining
        if _draining:
            return
        _draining = True
        _end_at(exit_deadline(), 128 + signum)
        log.info("SIGTERM: handing over %d sessions before stopping", len(_bridges))
        loop.call_soon_threadsafe(lambda: loop.create_task(_drain_then(previous, signum, frame)))

    return on_sigterm


def _end_at(seconds: float, status: int) -> None:
    """End the process after ``seconds`` whatever holds it: a stop timeout is a promise."""

    def end() -> None:
        log.error("SIGTERM: still running %.1f s later, exiting now", seconds)
        logging.shutdown()
        os._exit(status)

    timer = threading.Timer(seconds, end)
    timer.daemon = True  # never itself what keeps the process alive
    timer.start()


async def _drain_then(previous: Any, signum: int, frame: FrameType | None) -> None:
    # Readiness is failing already: new sessions go elsewhere once the balancer's health
    # check has seen it, so resumes are not sent back here (they would get 4012 again).
    delay = float(settings.LIVE_SHUTDOWN_READY_DELAY)
    if delay > 0:
        await asyncio.sleep(delay)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + float(settings.LIVE_SHUTDOWN_GRACE)
    started: set[LiveBridge] = set()
    # Twice: a session whose handshake passed the draining check just before SIGTERM
    # registers after the first pass.
    for _ in range(2):
        handovers = []
        for bridge, context in list(_bridges.items()):
            if bridge in started or bridge.closed.is_set():
                continue
            started.add(bridge)
            handovers.append(loop.create_task(bridge.server_restart(), context=context))
        if not handovers:
            break
        _, pending = await asyncio.wait(handovers, timeout=max(0.0, deadline - loop.time()))
        if pending:
            # Stuck on a write (the database not answering): their clients are told anyway
            # (the close is in the hand-over's ``finally``); the reaper records the detach.
            log.warning("SIGTERM: %d sessions not handed over in time", len(pending))
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=CLOSE_WAIT)
            break
    if callable(previous):
        previous(signum, frame)  # the server's own shutdown, as without us
    elif previous in (signal.SIG_DFL, None):
        raise SystemExit(128 + signum)
