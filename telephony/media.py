"""``/ws/v1/phone/twilio/<account>``: a call's Twilio Media Stream, as a session transport.

Speaks the carrier's protocol (docs/telephony.md, "The media stream"): ``connected``,
``start`` (its ``customParameters.token`` is the single-use credential of our TwiML
answer, bound to the call's sid), ``media``, ``mark``, ``dtmf``, ``stop``; we send
``media``, ``mark`` and ``clear`` (``PhoneOutput``). Nothing is sent before ``start``.
The session itself is the same ``LiveBridge`` the browser's WebSocket drives.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from typing import Any

from django.conf import settings

from sessions.close_codes import CloseCode
from sessions.ratelimit import TokenBucket
from sessions.reaper import ensure_reaper
from sessions.relay.speech import SpeechDetector, SpeechEvent
from sessions.selectors import voice_session_metadata_for_resume
from sessions.services import SessionRefused
from sessions.shutdown import draining
from sessions.tokens import client_token_find
from sessions.transport_consumer import BridgeConsumer
from telephony.actions import (
    phone_call_action_claim,
    phone_call_action_pending,
    phone_call_action_perform,
)
from telephony.audio import InboundAudio
from telephony.calls import (
    RESTARTING,
    phone_call_connected,
    phone_call_ended,
    phone_call_refused,
    phone_call_restarting,
    phone_call_resumed,
    phone_call_retry,
)
from telephony.phone_sink import PhoneOutput
from telephony.selectors import carrier_account_has_sid
from voice_platform.db_threads import db_async
from voice_platform.outages import outage_of

log = logging.getLogger(__name__)

PHONE_CHANNEL = "phone"
CALL_TOOLS = {"end_call": "agent_hung_up", "transfer_call": "call_transferred"}
CALL_ACTIONS = {"hang_up": "agent_hung_up", "transfer": "call_transferred"}
# Caller speech this long stops a finished reply still playing (local barge-in): longer
# than a click, a cough or an "mm-hm" (the detector counts loud audio, not words).
BARGE_IN_MS = 300
GREETING_CUE = "(The phone call has just been answered. Greet the caller now by saying: {greeting})"
KEYPAD_TEXT = "(The caller pressed these keys on the phone keypad: {keys})"


def _dict(value: Any) -> dict[str, Any]:
    """A message's object field, or {} when it is missing or not an object."""
    return value if isinstance(value, dict) else {}


class PhoneMediaConsumer(BridgeConsumer):
    output: PhoneOutput | None = None
    call_sid = ""
    account_sid = ""
    _keys_timer: asyncio.TimerHandle | None = None
    _action_task: asyncio.Task[None] | None = None
    _started = False
    _owns_call = True  # False when the call's row turned out to be another stream's

    async def connect(self) -> None:
        # Twilio opens the stream first and says who it is in ``start``.
        await self.accept()
        ensure_reaper()
        self.limiter = TokenBucket(settings.LIVE_WS_MESSAGE_RATE, settings.LIVE_WS_MESSAGE_BURST)
        self.inbound = InboundAudio()
        self._keys: list[str] = []
        self._turn_done = asyncio.Event()  # the model's turn ended (since it was cleared)
        self._caller = SpeechDetector(start_ms=BARGE_IN_MS)
        self._action_reason = ""  # set when end_call / transfer_call is carried out

    async def refuse_unavailable(self, dependency: str) -> None:
        await self._refuse(f"{dependency}_unavailable")

    async def _refuse(self, reason: str, *, record: bool = True) -> None:
        """The call cannot have a session: recorded (the carrier's next request reads it
        and says so to the caller), and the stream closed. ``record`` False: a stream that
        proved nothing (a bad credential) must not touch the call its ``start`` names."""
        log.info("phone stream refused: %s", reason)
        if self.call_sid and record:
            with contextlib.suppress(Exception):  # the database may be what is missing
                await db_async(phone_call_refused)(call_sid=self.call_sid, reason=reason)
        await self.close(code=CloseCode.NORMAL)

    # --- from the carrier -------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.limiter.allow():
            await self._end_or_close("rate_limited", CloseCode.POLICY)
            return
        try:
            message = json.loads(text_data or "")
            event = message["event"]
        except (ValueError, KeyError, TypeError):
            log.info("phone stream: a frame that is not a Media Streams message")
            return
        if event == "start" and not self._started:
            await self._start(message)
            return
        bridge = self.bridge
        if bridge is None or bridge.closed.is_set():
            return  # before ``start`` (or after the end) nothing is taken
        if event == "media":
            await self._media(message)
        elif event == "mark" and self.output is not None:
            self.output.mark_played(str(_dict(message.get("mark")).get("name", "")))
        elif event == "dtmf":
            self._key(_dict(message.get("dtmf")).get("digit"))
        elif event == "stop":
            # After our own hang-up or transfer the carrier stops the stream too.
            await bridge.end(reason=self._action_reason or "caller_hung_up", code=CloseCode.NORMAL)

    async def _start(self, message: dict[str, Any]) -> None:
        self._started = True
        start = _dict(message.get("start"))
        params = _dict(start.get("customParameters"))
        self.call_sid = str(start.get("callSid") or "")
        self.account_sid = str(start.get("accountSid") or "")
        stream_sid = str(start.get("streamSid") or message.get("streamSid") or "")
        media_format = _dict(start.get("mediaFormat"))
        if self.scope.get("unavailable"):  # the account could not even be looked up
            await self.refuse_unavailable(str(self.scope["unavailable"]))
            return
        if self.scope.get("tenant_id") is None or not self.call_sid or not stream_sid:
            await self._refuse("bad_start", record=False)
            return
        raw = str(params.get("token") or "")
        resume = str(params.get("resume") or "")
        try:
            # Before anything is written: only a stream that proves it is the call's may
            # change the call (its account, and a credential bound to its sid).
            found = await db_async(self._credential)(raw=raw, resume=resume)
            if found is None:
                await self._refuse("invalid_credential", record=False)
                return
            token, metadata = found
            if draining():
                # Stopping: the carrier's next request connects the call again (to a
                # running process, through the balancer) with a fresh credential.
                log.info("phone stream refused: the server is stopping")
                if not resume:
                    await db_async(phone_call_retry)(call_sid=self.call_sid)
                await self.close(code=CloseCode.NORMAL)
                return
            if (media_format.get("encoding"), media_format.get("sampleRate")) != (
                "audio/x-mulaw",
                8000,
            ) or media_format.get("channels", 1) != 1:
                await self._refuse("unsupported_media_format")
                return
            grant, tools = await self.open_session(
                token="" if resume else raw, resume=resume, origin=None, found=token
            )
        except SessionRefused as refusal:
            # A spent credential proves nothing either (a replay): the call is left alone.
            await self._refuse(refusal.reason, record=refusal.reason != "token_expired_or_used")
            return
        except Exception as exc:
            dependency = outage_of(exc)
            if dependency is None:
                raise
            await self.refuse_unavailable(dependency)
            return
        self.output = PhoneOutput(
            stream_sid=stream_sid,
            send=lambda text: self.send(text_data=text),
            close=lambda code: self.close(code=code),
            events=self._on_event,
            on_heard=self._on_heard,
            lead=settings.PHONE_PLAYBACK_LEAD,
        )
        self.output.start()
        bridge = await self.attach_bridge(grant=grant, tools=tools, sink=self.output)
        record = phone_call_resumed if grant.resumed else phone_call_connected
        if not await db_async(record)(call_sid=self.call_sid, session_id=bridge.session_id):
            # The call is not in the state this stream expects (it ended meanwhile, or
            # another stream took it): this session must not run unaccounted for, and
            # the call's row is not this stream's to write.
            log.warning("phone stream: call %s is not waiting for this stream", self.call_sid)
            self._owns_call = False
            await bridge.end(reason="server_error", code=CloseCode.NORMAL)
            return
        if grant.resumed:
            # An end_call / transfer_call the restart interrupted is carried out here.
            if await db_async(phone_call_action_pending)(session_id=bridge.session_id):
                self._turn_done.set()
                self._action_task = asyncio.create_task(self._carry_out(""), name="phone-action")
            return
        greeting = str(metadata.get("greeting") or "").strip()
        if greeting:
            bridge.prompt_model(GREETING_CUE.format(greeting=greeting))

    def _credential(self, *, raw: str, resume: str) -> tuple[Any, dict[str, Any]] | None:
        """(the client token or None for a resume, its metadata) when the stream's
        credential is a phone credential bound to its call, of the URL's account; else
        None. (One trip to a database thread.)"""
        account_id = self.scope["url_route"]["kwargs"]["account_id"]
        if not carrier_account_has_sid(public_id=account_id, account_sid=self.account_sid):
            return None
        token = None
        if resume:  # the same call again, after a restart or a drop cut its stream
            metadata = voice_session_metadata_for_resume(raw_resume_token=resume)
        else:
            token = client_token_find(raw=raw, with_owners=True)
            metadata = token.metadata if token is not None else None
        if metadata is None or metadata.get("call_sid") != self.call_sid:
            return None
        if metadata.get("channel") != PHONE_CHANNEL:
            return None
        return token, metadata

    async def _media(self, message: dict[str, Any]) -> None:
        media = _dict(message.get("media"))
        if media.get("track", "inbound") != "inbound" or self.bridge is None:
            return
        try:
            ulaw = base64.b64decode(str(media.get("payload") or ""), validate=True)
        except (binascii.Error, ValueError):
            self.bridge.counters["errors"] += 1
            return
        pcm = self.inbound.convert(ulaw)
        if pcm:  # the resampler's filter works in blocks: most frames come out in bursts
            if self._caller.feed(pcm) is SpeechEvent.START and self.output is not None:
                self.output.user_speech_started()
            await self.bridge.client_audio(pcm)

    def _key(self, digit: Any) -> None:
        """Keys pressed close together reach the model as one message; ``#`` ends one."""
        if not isinstance(digit, str) or len(digit) != 1 or digit not in "0123456789*#ABCD":
            return
        self._keys.append(digit)
        if self._keys_timer is not None:
            self._keys_timer.cancel()
        if digit == "#":
            self._send_keys()
        else:
            loop = asyncio.get_running_loop()
            self._keys_timer = loop.call_later(settings.PHONE_DTMF_GAP, self._send_keys)

    def _send_keys(self) -> None:
        self._keys_timer = None
        keys, self._keys = " ".join(self._keys), []
        bridge = self.bridge
        if keys and bridge is not None and not bridge.closed.is_set():
            bridge.client_text(KEYPAD_TEXT.format(keys=keys), True)

    async def disconnect(self, code: int) -> None:
        if self._keys_timer is not None:
            self._keys_timer.cancel()
        bridge = self.bridge
        if bridge is not None and not bridge.closed.is_set():
            # Closed without ``stop``: the network between the carrier and us, not the
            # caller. The session stays resumable and the carrier's ``stream-ended``
            # request connects the call again; if it never comes, the session ends when
            # its resume window passes (and the sweep ends the call with it).
            with contextlib.suppress(Exception):
                await db_async(phone_call_restarting)(call_sid=self.call_sid)
            await bridge.detach()
        if self._action_task is not None and self._action_task is not asyncio.current_task():
            self._action_task.cancel()
        if self.output is not None:
            await self.output.stop()
        await self.leave_results_group()

    async def _end_or_close(self, reason: str, code: int) -> None:
        if self.bridge is not None and not self.bridge.closed.is_set():
            await self.bridge.end(reason=reason, code=code)
        else:
            await self.close(code=code)

    # --- from the bridge (through PhoneOutput) ----------------------------------------------

    def _on_heard(self) -> None:
        if self.bridge is not None:
            self.bridge.client_playback_started()

    async def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in ("turn_complete", "interrupted"):
            self._turn_done.set()
        elif kind == "tool.finished" and event.get("status") == "ok":
            if event.get("name") in CALL_TOOLS and self._action_task is None:
                self._turn_done.clear()  # the sentence said with the tool's answer
                self._action_task = asyncio.create_task(
                    self._carry_out(CALL_TOOLS[str(event["name"])]), name="phone-action"
                )
        elif kind == "session.ended":
            reason = str(event.get("reason", ""))
            # Not final on a server restart: the carrier's next request connects the call
            # again. Superseded: another stream of the call holds the session now. Else
            # the call is over (the stream-ended answer hangs up).
            if self.call_sid and self._owns_call and reason != "superseded":
                with contextlib.suppress(Exception):
                    if reason == RESTARTING:
                        await db_async(phone_call_restarting)(call_sid=self.call_sid)
                    else:
                        await db_async(phone_call_ended)(call_sid=self.call_sid, reason=reason)

    async def _carry_out(self, reason: str) -> None:
        """end_call / transfer_call: after the sentence the model is saying (its turn's end,
        played out), at most PHONE_END_CALL_WAIT seconds; then the carrier is asked. The
        session ends in every case: a failure too (``action_failed``: the carrier's next
        request then hangs up, or dials the transfer's number itself)."""
        bridge = self.bridge
        outcome = "failed"
        ending = False  # the call must end whatever happens next
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.PHONE_END_CALL_WAIT):
                    await self._turn_done.wait()
                    if self.output is not None:
                        await self.output.drained()
            if bridge is None or bridge.closed.is_set():
                return
            pending = await db_async(phone_call_action_pending)(session_id=bridge.session_id)
            if pending is None:
                return
            ending = True
            reason = reason or CALL_ACTIONS[pending.action]
            self._action_reason = reason
            claimed = await db_async(phone_call_action_claim)(call_id=pending.call_id)
            # The carrier's API may take seconds: not on a database thread.
            outcome = (
                claimed
                if isinstance(claimed, str)
                else await asyncio.to_thread(phone_call_action_perform, claimed)
            )
            log.info("phone call %s: %s (%s)", self.call_sid, pending.action, outcome)
        except Exception:
            ending = True
            log.exception("phone call %s: the agent's %s failed", self.call_sid, reason)
        finally:
            if bridge is not None and not bridge.closed.is_set() and ending:
                ok = outcome in ("hung_up", "transferred", "already_done")
                self._action_reason = reason if ok else "action_failed"
                await bridge.end(reason=self._action_reason, code=CloseCode.NORMAL)
