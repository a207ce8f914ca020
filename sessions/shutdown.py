"""SIGTERM drains the process's sessions before the server stops (a deploy, a scale-in).

Daphne stops on SIGTERM by closing every socket, and only then cancels the applications:
clients saw their connection drop with no close frame (1006) and the turn in flight was
lost from the model's history. Here SIGTERM first hands every live session over: each
keeps its turn in flight for replay, records its detach (resumable), tells its client
``session.ended`` ``server_restart`` and closes with 4012, all within
``LIVE_SHUTDOWN_GRACE`` seconds; new connections meanwhile are refused with 4012 too.
Then the server's own SIGTERM handler runs, as before.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import signal
import weakref
from types import FrameType
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from sessions.bridge import LiveBridge

log = logging.getLogger(__name__)
# Each bridge with its connection's context (its tenant scope): the hand-over runs in it.
_bridges: weakref.WeakKeyDictionary[LiveBridge, contextvars.Context] = weakref.WeakKeyDictionary()
_installed_on: asyncio.AbstractEventLoop | None = None
_draining = False


def draining() -> bool:
    """Whether this process is handing its sessions over before it stops."""
    return _draining


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
        log.info("SIGTERM: handing over %d sessions before stopping", len(_bridges))
        loop.call_soon_threadsafe(lambda: loop.create_task(_drain_then(previous, signum, frame)))

    return on_sigterm


async def _drain_then(previous: Any, signum: int, frame: FrameType | None) -> None:
    loop = asyncio.get_running_loop()
    handovers = [
        loop.create_task(bridge.server_restart(), context=context)
        for bridge, context in list(_bridges.items())
        if not bridge.closed.is_set()
    ]
    if handovers:
        _, pending = await asyncio.wait(handovers, timeout=float(settings.LIVE_SHUTDOWN_GRACE))
        if pending:
            log.warning("SIGTERM: %d sessions not handed over in time", len(pending))
    if callable(previous):
        previous(signum, frame)  # the server's own shutdown, as without us
    elif previous in (signal.SIG_DFL, None):
        raise SystemExit(128 + signum)
