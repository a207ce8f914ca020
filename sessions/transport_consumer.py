"""What every transport's consumer shares: a WebSocket that carries one live session.

The browser (``sessions.consumers.LiveConsumer``, docs/protocol.md) and a phone call's
media stream (``telephony.media``) are two transports of the same session machinery: the
same tokens, limits, tools, transcripts, resumption and audit, through one ``LiveBridge``.
A transport translates its frames and says how a refusal or a failure reaches its user.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from sessions import client_events
from sessions.bridge import ClientSink, LiveBridge
from sessions.close_codes import CloseCode, close_reason
from sessions.live import bridge_config, connect_factory, live_session_start
from sessions.models import ClientToken
from sessions.notify import notify_superseded
from sessions.services import SessionGrant
from sessions.shutdown import shutdown_track
from sessions.tool_gateway import ToolGateway
from tools.calls import tool_results_group
from voice_platform.db_threads import db_async
from voice_platform.outages import outage_of

log = logging.getLogger(__name__)


class BridgeConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels ships no types
    bridge: LiveBridge | None = None
    results_group: str | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        inner = asyncio.ensure_future(super().__call__(scope, receive, send))
        try:
            await asyncio.shield(inner)
        except asyncio.CancelledError:
            # Server shutdown cancels the application without a disconnect. Release the
            # bridge (tasks, upstream socket; the session stays resumable, its turn in
            # flight kept, the client told to resume) before the channel layer unwinds:
            # channels-redis finishes an in-flight 5 s BZPOPMIN first, one consumer at a
            # time per process.
            bridge = self.bridge
            if bridge is not None and not bridge.closed.is_set():
                await asyncio.shield(bridge.server_restart())
            inner.cancel()
            raise
        except Exception as exc:
            # A fault of ours, or a dependency gone (the database at the handshake): the
            # session still ends with a reason, releases its slot, and the socket closes
            # with a code the client can act on, never a bare 1011 from the server.
            await self._end_after_failure(exc)

    async def _end_after_failure(self, exc: Exception) -> None:
        dependency = outage_of(exc)
        bridge = self.bridge
        if bridge is not None and not bridge.closed.is_set():
            log.error("session %s failed", bridge.session_id, exc_info=exc)
            await bridge.end(
                reason="server_error",
                code=CloseCode.UPSTREAM_UNAVAILABLE,
                error=client_events.error("server_error", "The session failed on the server."),
            )
        elif bridge is None:
            if dependency is None:
                log.error("live connection failed at its start", exc_info=exc)
                await self.close(code=CloseCode.UPSTREAM_UNAVAILABLE)
            else:
                log.warning("live connection refused: the %s is unreachable: %s", dependency, exc)
                await self.refuse_unavailable(dependency)
        await self.disconnect(CloseCode.UPSTREAM_UNAVAILABLE)

    async def refuse_unavailable(self, dependency: str) -> None:
        """A session cannot start without ``dependency``: tell the user (per transport)."""
        raise NotImplementedError

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels (4.2+) closes stale database connections before every message, on the
        # process's one thread-sensitive thread: a thread hop per audio frame, and every
        # call's frames queued behind whatever that thread was doing. These consumers reach
        # the database only through db_async (voice_platform/db_threads.py), whose calls
        # close old connections themselves, so client frames go straight to their handler.
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
            return
        await super().dispatch(message)

    async def open_session(
        self, *, token: str, resume: str, origin: str | None, found: ClientToken | None
    ) -> tuple[SessionGrant, ToolGateway]:
        """Open or resume the session; raises ``SessionRefused`` (or a dependency's error)."""
        grant, tools = await db_async(live_session_start)(
            token=token, resume=resume, origin=origin,
            channel_name=self.channel_name, found=found,
        )  # fmt: skip
        return grant, tools

    async def attach_bridge(
        self, *, grant: SessionGrant, tools: ToolGateway, sink: ClientSink
    ) -> LiveBridge:
        """Take the session over (an older connection is told), join its tool-result group
        and start its bridge, answering through ``sink``."""
        if grant.superseded_channel:
            await notify_superseded(grant.superseded_channel)
        # Tool outcomes reach whichever process holds the session now (``tool.result``).
        self.results_group = tool_results_group(grant.session.pk)
        try:
            await self.channel_layer.group_add(self.results_group, self.channel_name)
        except Exception:  # wake-ups are lost then; the calls' polls still find outcomes
            log.warning("could not join %s", self.results_group, exc_info=True)
        self.bridge = LiveBridge(
            grant=grant,
            sink=sink,
            channel_name=self.channel_name,
            connect=connect_factory(grant, tools),
            config=bridge_config(),
            tools=tools,
            began_at=self.scope.get("arrived_at"),
        )
        await self.bridge.start()
        shutdown_track(self.bridge)
        return self.bridge

    async def leave_results_group(self) -> None:
        if self.results_group is not None:
            group, self.results_group = self.results_group, None
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:  # the channel layer is down: the membership expires by itself
                log.warning("could not leave %s", group, exc_info=True)

    # --- channel-layer control messages ------------------------------------------------

    async def session_superseded(self, message: dict[str, Any]) -> None:  # "session.superseded"
        if self.bridge is not None:
            await self.bridge.superseded()

    async def session_end(self, message: dict[str, Any]) -> None:  # "session.end"
        if self.bridge is not None:
            await self.bridge.end(reason=str(message.get("reason", "ended_by_api")))

    async def tool_result(self, message: dict[str, Any]) -> None:  # "tool.result"
        if self.bridge is not None:
            self.bridge.tools.on_result(message)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        # Autobahn (under Daphne) accepts only a plain int, not our IntEnum close codes.
        plain = int(code) if isinstance(code, int) and not isinstance(code, bool) else code
        if reason is None:
            # Every close of ours carries its documented text (daphne_options delivers it).
            reason = close_reason(plain if isinstance(plain, int) else CloseCode.NORMAL)
        await super().close(code=plain, reason=reason)
