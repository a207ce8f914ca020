"""``/ws/v1/live``: protocol plumbing only. Rules live in services; the session in the bridge."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from sessions import client_events
from sessions.auth import connection_credentials
from sessions.bridge import LiveBridge
from sessions.client_messages import BadMessage, audio_frame_problem, parse_client_message
from sessions.close_codes import CloseCode
from sessions.live import bridge_config, connect_factory, tool_gateway_for
from sessions.notify import notify_superseded
from sessions.ratelimit import TokenBucket
from sessions.reaper import ensure_reaper
from sessions.services import SessionRefused, voice_session_open, voice_session_resume
from sessions.uplink import ItemKind
from tools.calls import tool_results_group

log = logging.getLogger(__name__)

_CONTROL = {
    "audio_end": ItemKind.AUDIO_END,
    "activity_start": ItemKind.ACTIVITY_START,
    "activity_end": ItemKind.ACTIVITY_END,
}


class LiveConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels ships no types
    bridge: LiveBridge | None = None
    results_group: str | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        inner = asyncio.ensure_future(super().__call__(scope, receive, send))
        try:
            await asyncio.shield(inner)
        except asyncio.CancelledError:
            # Server shutdown cancels the application without a disconnect. Release the
            # bridge (tasks, upstream socket; the session stays resumable) before the
            # channel layer unwinds: channels-redis finishes an in-flight 5 s BZPOPMIN
            # first, one consumer at a time per process.
            bridge = self.bridge
            if bridge is not None and not bridge.closed.is_set():
                await asyncio.shield(bridge.detach())
            inner.cancel()
            raise

    async def connect(self) -> None:
        # Refusals are close codes after the upgrade: a browser cannot read the status of a
        # refused upgrade, and Channels turns a close before accept() into a bare 403.
        await self.accept()
        ensure_reaper()
        token, resume = connection_credentials(self.scope)
        if self.scope.get("tenant_id") is None or not (token or resume) or (token and resume):
            log.info("live connection refused: unknown credential")
            await self.close(code=CloseCode.UNAUTHENTICATED)
            return
        origin = dict(self.scope.get("headers", [])).get(b"origin", b"").decode("latin-1")
        try:
            if resume:
                grant = await database_sync_to_async(voice_session_resume)(
                    raw_resume_token=resume, origin=origin or None, channel_name=self.channel_name
                )
            else:
                grant = await database_sync_to_async(voice_session_open)(
                    raw_token=token, origin=origin or None, channel_name=self.channel_name
                )
        except SessionRefused as refusal:
            log.info("live connection refused: %s", refusal.reason)
            await self.close(code=refusal.code)
            return
        if grant.superseded_channel:
            await notify_superseded(grant.superseded_channel)
        # Tool outcomes reach whichever process holds the session now (``tool.result``).
        self.results_group = tool_results_group(grant.session.pk)
        try:
            await self.channel_layer.group_add(self.results_group, self.channel_name)
        except Exception:  # wake-ups are lost then; the calls' polls still find outcomes
            log.warning("could not join %s", self.results_group, exc_info=True)
        tools = await database_sync_to_async(tool_gateway_for)(grant)
        # Control messages by count (the contract's 50/s); audio by bytes, so 20 ms frames
        # (50/s by themselves) and a ping now and then never add up to a violation.
        self.limiter = TokenBucket(settings.LIVE_WS_MESSAGE_RATE, settings.LIVE_WS_MESSAGE_BURST)
        self.audio_limiter = TokenBucket(
            settings.LIVE_WS_AUDIO_BYTES_RATE, 2 * settings.LIVE_WS_AUDIO_BYTES_RATE
        )
        self.bridge = LiveBridge(
            grant=grant,
            sink=self,
            channel_name=self.channel_name,
            connect=connect_factory(grant, tools),
            config=bridge_config(),
            tools=tools,
        )
        await self.bridge.start()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        bridge = self.bridge
        if bridge is None or bridge.closed.is_set():
            return
        allowed = (
            self.audio_limiter.allow(len(bytes_data))
            if bytes_data is not None
            else self.limiter.allow()
        )
        if not allowed:
            await bridge.end(
                reason="rate_limited",
                code=CloseCode.POLICY,
                error=client_events.error("rate_limited", "Too many messages per second."),
            )
            return
        if bytes_data is not None:
            problem = audio_frame_problem(bytes_data)
            if problem is not None:
                await bridge.end(
                    reason="bad_frame",
                    code=CloseCode.BAD_FRAME,
                    error=client_events.error("bad_frame", problem),
                )
                return
            await bridge.client_audio(bytes_data)
            return
        try:
            message = parse_client_message(text_data or "")
        except BadMessage as exc:
            bridge.counters["errors"] += 1
            await bridge.emit(client_events.error("bad_message", str(exc)))
            return
        if message.type == "text":
            bridge.client_text(message.text, message.turn_complete)
        elif message.type == "ping":
            await bridge.emit(client_events.simple("pong", id=message.ping_id))
        elif message.type == "close":
            await bridge.end(reason="client_closed", code=CloseCode.NORMAL)
        else:
            bridge.client_control(_CONTROL[message.type])

    async def disconnect(self, code: int) -> None:
        bridge = self.bridge
        if bridge is not None and not bridge.closed.is_set():
            await bridge.detach()
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

    # --- ClientSink ------------------------------------------------------------------------

    async def send_event(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(event, separators=(",", ":")))

    async def send_audio(self, pcm: bytes) -> None:
        await self.send(bytes_data=pcm)

    async def close_connection(self, code: int) -> None:
        await self.close(code=code)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        # Autobahn (under Daphne) accepts only a plain int, not our IntEnum close codes.
        plain = int(code) if isinstance(code, int) and not isinstance(code, bool) else code
        await super().close(code=plain, reason=reason)
