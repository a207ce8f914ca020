"""``/ws/v1/live``: protocol plumbing only. Rules live in services; the session in the bridge."""

from __future__ import annotations

import contextlib
import json
import logging
import random
from typing import Any

from django.conf import settings

from sessions import client_events
from sessions.auth import FOUND_TOKEN, connection_credentials
from sessions.client_messages import BadMessage, audio_frame_problem, parse_client_message
from sessions.close_codes import CloseCode, close_reason
from sessions.ratelimit import TokenBucket
from sessions.reaper import ensure_reaper
from sessions.services import SessionRefused
from sessions.shutdown import draining
from sessions.transport_consumer import BridgeConsumer
from sessions.uplink import ItemKind
from voice_platform.daphne_options import VIOLATION_CODES
from voice_platform.db_threads import db_async
from voice_platform.outages import RETRY_AFTER_SECONDS, outage_of
from voice_platform.tenancy.attempts import (
    auth_failure_record,
    auth_failure_retry_after,
    scope_client_address,
)

log = logging.getLogger(__name__)

_CONTROL = {
    "audio_end": ItemKind.AUDIO_END,
    "activity_start": ItemKind.ACTIVITY_START,
    "activity_end": ItemKind.ACTIVITY_END,
}


class LiveConsumer(BridgeConsumer):
    """The browser's transport: JSON events and binary PCM frames (docs/protocol.md)."""

    async def refuse_unavailable(self, dependency: str) -> None:
        """A session cannot start without ``dependency``: say so, with when to try again."""
        with contextlib.suppress(Exception):  # the client may be gone already
            await self.send_event(
                client_events.error(
                    "unavailable",
                    f"The {dependency} is unreachable. Try again.",
                    retry_after=RETRY_AFTER_SECONDS,
                )
            )
            await self.close(code=CloseCode.BUSY)

    async def connect(self) -> None:
        # Refusals are close codes after the upgrade: a browser cannot read the status of a
        # refused upgrade, and Channels turns a close before accept() into a bare 403.
        await self.accept()
        ensure_reaper()
        if self.scope.get("unavailable"):  # the credential could not even be looked up
            await self.refuse_unavailable(str(self.scope["unavailable"]))
            return
        if draining():  # stopping: the client resumes or starts on another process
            await self.close(code=CloseCode.SERVER_RESTART)
            return
        token, resume = connection_credentials(self.scope)
        address = scope_client_address(self.scope)
        # Before the credential: a blocked address is refused even with a valid token.
        if await db_async(auth_failure_retry_after)(address=address) is not None:
            log.info("live connection refused: too many failed attempts from the address")
            await self.close(code=CloseCode.TOO_MANY_FAILURES)
            return
        if self.scope.get("tenant_id") is None or not (token or resume) or (token and resume):
            log.info("live connection refused: unknown credential")
            if self.scope.get("tenant_id") is None and (token or resume):
                # Matched no token or session: a guess. Known but spent tokens are not.
                await db_async(auth_failure_record)(address=address)
            await self.close(code=CloseCode.UNAUTHENTICATED)
            return
        origin = dict(self.scope.get("headers", [])).get(b"origin", b"").decode("latin-1")
        try:
            grant, tools = await self.open_session(
                token=token, resume=resume, origin=origin or None,
                found=self.scope.get(FOUND_TOKEN),
            )  # fmt: skip
        except SessionRefused as refusal:
            log.info("live connection refused: %s", refusal.reason)
            if refusal.capacity:  # when to try again, spread so refused clients do not storm
                base = settings.LIVE_BUSY_RETRY_AFTER
                retry = round(random.uniform(base, 2 * base))  # noqa: S311
                with contextlib.suppress(Exception):
                    await self.send_event(client_events.at_capacity(retry_after=retry))
            await self.close(code=refusal.code, reason=close_reason(refusal.code, refusal.reason))
            return
        except Exception as exc:
            dependency = outage_of(exc)
            if dependency is None:
                raise
            # Refused here, not by unwinding the consumer: its dispatch loop first waits
            # for the channel layer's pending receive (channels-redis: up to 5 s).
            log.warning("live connection refused: the %s is unreachable: %s", dependency, exc)
            await self.refuse_unavailable(dependency)
            return
        # Every frame by count (100/s: a 20 ms audio stream is 50/s, room is left for
        # control messages and a backlog after a stall), and audio by bytes as well.
        self.limiter = TokenBucket(settings.LIVE_WS_MESSAGE_RATE, settings.LIVE_WS_MESSAGE_BURST)
        self.audio_limiter = TokenBucket(
            settings.LIVE_WS_AUDIO_BYTES_RATE, 2 * settings.LIVE_WS_AUDIO_BYTES_RATE
        )
        await self.attach_bridge(grant=grant, tools=tools, sink=self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        bridge = self.bridge
        if bridge is None or bridge.closed.is_set():
            return
        # Every frame is a message (a two-byte audio frame costs as much work as any);
        # audio is also held to its byte rate.
        allowed = self.limiter.allow() and (
            bytes_data is None or self.audio_limiter.allow(len(bytes_data))
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
        elif message.type == "playback.started":
            bridge.client_playback_started()
        else:
            bridge.client_control(_CONTROL[message.type])

    async def disconnect(self, code: int) -> None:
        bridge = self.bridge
        if bridge is not None and not bridge.closed.is_set():
            if code in VIOLATION_CODES:
                # The server closed it for a frame the protocol forbids (too big, not
                # UTF-8): a broken client, not a dropped one, so the session ends.
                await bridge.end(reason="bad_frame", code=CloseCode.BAD_FRAME)
            else:
                await bridge.detach()
        await self.leave_results_group()

    # --- ClientSink ------------------------------------------------------------------------

    async def send_event(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(event, separators=(",", ":")))

    async def send_audio(self, pcm: bytes) -> None:
        await self.send(bytes_data=pcm)

    async def close_connection(self, code: int) -> None:
        await self.close(code=code)

    def output_heard_share(self) -> float | None:
        return None  # the browser plays what it received; it does not say how much
