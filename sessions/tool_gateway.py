"""The seam between the bridge and tool execution.

``ToolGateway`` decides what the model's function calls get. Without an allowlist every
call is refused (``NoTools``); otherwise ``ServiceToolGateway`` admits each call through the
tools app (``tools.calls``), waits for its persisted outcome and answers the model.

A call is known by its idempotency key (what the user asked: the session, the turn's
position, the tool, its arguments), not by the model's call id. After a reconnect the
model asks again with a new id; the re-ask joins the first call (in this process, its
pending outcome; in another, its row) and is answered from its outcome: the tool runs once
and the client sees one ``tool.started`` / ``tool.finished`` per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from channels.db import database_sync_to_async
from google.genai import types

from tools.calls import (
    FINISHED_STATUS,
    Admission,
    ToolAllowlist,
    ToolCallRequest,
    tool_call_admit,
    tool_call_cancel_by_key,
    tool_call_finish_early,
    tool_call_outcome,
    tool_call_outcome_by_key,
    tool_call_run_inprocess,
)

log = logging.getLogger(__name__)

SendResponses = Callable[[list[types.FunctionResponse]], Awaitable[None]]
Emit = Callable[[dict[str, Any]], Awaitable[None]]

# A lost wake-up (or a result written while this process was away) is still found here.
RESULT_POLL_SECONDS = 1.0
ADMISSION_FAILED = "the tool call could not be admitted (the platform is unavailable)"
EARLY_RESULTS_KEPT = 32
SETTLED_KEPT = 64


class ToolGateway(Protocol):
    def function_declarations(self) -> list[types.FunctionDeclaration]: ...

    async def on_tool_call(
        self, calls: Sequence[types.FunctionCall], send: SendResponses, emit: Emit, turn: int
    ) -> None: ...

    async def on_cancellation(self, ids: Sequence[str], emit: Emit) -> None: ...

    def on_reconnect(self) -> None: ...

    def on_result(self, message: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


class NoTools:
    """An agent without an allowlist: every call is refused."""

    def function_declarations(self) -> list[types.FunctionDeclaration]:
        return []

    async def on_tool_call(
        self, calls: Sequence[types.FunctionCall], send: SendResponses, emit: Emit, turn: int
    ) -> None:
        responses = []
        for call in calls:
            name = call.name or ""
            responses.append(
                types.FunctionResponse(
                    id=call.id,
                    name=name,
                    response={"error": f"tool {name!r} is not allowlisted for this agent"},
                )
            )
            await emit({"type": "tool.finished", "call_id": call.id, "name": name,
                        "status": "rejected"})  # fmt: skip
        await send(responses)

    async def on_cancellation(self, ids: Sequence[str], emit: Emit) -> None:
        return None

    def on_reconnect(self) -> None:
        return None

    def on_result(self, message: dict[str, Any]) -> None:
        return None

    async def close(self) -> None:
        return None


class _Request:
    """One request (idempotency key): its settling task and the asks that wait for it."""

    __slots__ = ("call_id", "event", "name", "outcome", "settled", "task", "withdrawn")

    def __init__(self, call_id: str, name: str) -> None:
        self.call_id = call_id  # the first ask's id: what the client's events carry
        self.name = name
        self.event = asyncio.Event()  # set by a wake-up
        self.outcome: dict[str, Any] | None = None  # from a wake-up
        self.task: asyncio.Task[dict[str, Any]] | None = None
        self.settled: dict[str, Any] | None = None  # the final outcome
        self.withdrawn: set[str] = set()  # call ids the model cancelled


class ServiceToolGateway:
    """Allowlisted tools: admit in a service, execute in Celery (or a thread of this process
    when no broker is configured), wait for the persisted outcome, answer the model."""

    def __init__(self, *, session: Any, allowlist: ToolAllowlist, execution: str) -> None:
        self.session = session
        self.allowlist = allowlist
        self.execution = execution
        self._requests: dict[str, _Request] = {}  # by key; the newest SETTLED_KEPT settled
        self._key_of: dict[str, str] = {}  # call id -> key
        self._occurrences: Counter[tuple[int, str, str]] = Counter()
        self._early: dict[str, dict[str, Any]] = {}  # wake-ups before their request
        self._asks: set[asyncio.Task[None]] = set()
        self._replayed_turn: int | None = getattr(session, "replay_turn", None)

    def function_declarations(self) -> list[types.FunctionDeclaration]:
        return self.allowlist.declarations

    async def on_tool_call(
        self, calls: Sequence[types.FunctionCall], send: SendResponses, emit: Emit, turn: int
    ) -> None:
        """Each call of a ``toolCall`` in parallel; each answers the model when it is done.
        ``turn`` is the conversation position the calls answer (``sessions.uplink``)."""
        for call in calls:
            call_id, name, args = call.id or "", call.name or "", dict(call.args or {})
            known = self._key_of.get(call_id)  # a redelivered toolCall: the same request
            entry = self._requests.get(known) if known is not None else None
            if entry is None:
                request = self._request_for(call_id, name, args, turn)
                self._key_of[call_id] = request.key
                entry = self._requests.get(request.key)  # a re-ask joins its first ask
                if entry is None:
                    entry = self._start(request, emit)
            ask = asyncio.create_task(self._answer(call_id, name, entry, send), name="bridge-tool")
            self._asks.add(ask)
            ask.add_done_callback(self._asks.discard)

    def _start(self, request: ToolCallRequest, emit: Emit) -> _Request:
        entry = self._requests[request.key] = _Request(request.call_id, request.name)
        early = self._early.pop(request.key, None)
        if early is not None:  # its outcome's wake-up came first (after a resume)
            entry.outcome = early
            entry.event.set()
        entry.task = asyncio.create_task(
            self._settle(request.key, request, entry, emit), name="bridge-tool-settle"
        )
        return entry

    def _request_for(
        self, call_id: str, name: str, args: dict[str, Any], turn: int
    ) -> ToolCallRequest:
        canonical = ToolCallRequest(
            tenant_id=self.session.tenant_id, session_id=self.session.pk,
            end_user_id=self.session.end_user_id, call_id=call_id, name=name, args=args,
            turn=turn,
        )  # fmt: skip
        counted = (turn, name, canonical.key)
        occurrence = self._occurrences[counted]
        self._occurrences[counted] += 1
        if occurrence == 0:
            return canonical
        return ToolCallRequest(
            tenant_id=canonical.tenant_id, session_id=canonical.session_id,
            end_user_id=canonical.end_user_id, call_id=call_id, name=name, args=args,
            turn=turn, occurrence=occurrence,
        )  # fmt: skip

    def on_reconnect(self) -> None:
        """The upstream reconnected and is asked the unacknowledged turns again: their calls
        will come again, each the first of its kind once more."""
        self._occurrences.clear()

    async def _answer(self, call_id: str, name: str, entry: _Request, send: SendResponses) -> None:
        """One ask (call id) of a request: its outcome to the model, unless withdrawn."""
        assert entry.task is not None  # noqa: S101 (created with the request)
        outcome = await asyncio.shield(entry.task)
        if call_id in entry.withdrawn:
            return  # the model withdrew this call: it expects no answer
        response = types.FunctionResponse(id=call_id, name=name, response=outcome["response"])
        scheduling = outcome.get("scheduling")
        if outcome.get("behavior") == "NON_BLOCKING" and scheduling:
            response.scheduling = types.FunctionResponseScheduling(scheduling)
        await send([response])

    async def _settle(
        self, key: str, request: ToolCallRequest, entry: _Request, emit: Emit
    ) -> dict[str, Any]:
        """Admit the request (or find it admitted), wait for its outcome; emits its events."""
        try:
            admission: Admission = await database_sync_to_async(tool_call_admit)(
                request=request, allowlist=self.allowlist, dispatch=self.execution == "celery",
                # Requests of this connection are known here; only a turn replayed from
                # the session (its calls admitted by an earlier connection) may have rows.
                may_repeat=self._replayed_turn is not None and request.turn <= self._replayed_turn,
            )  # fmt: skip
        except Exception:  # Redis or the database down: answered, never silent
            log.exception("tool call %s could not be admitted", entry.call_id)
            outcome: dict[str, Any] = {"status": "failed", "response": {"error": ADMISSION_FAILED}}
        else:
            self.allowlist = admission.allowlist  # reloaded if an entry changed
            entry.call_id = admission.record.call_id  # a re-ask's events name the first ask
            outcome = await self._outcome_of(key, admission, entry, emit)
        entry.settled = outcome
        self._forget_settled()
        status = FINISHED_STATUS.get(str(outcome.get("status")), "error")
        await emit(
            {"type": "tool.finished", "call_id": entry.call_id, "name": entry.name,
             "status": status}
        )  # fmt: skip
        return outcome

    async def _outcome_of(
        self, key: str, admission: Admission, entry: _Request, emit: Emit
    ) -> dict[str, Any]:
        record = admission.record
        if entry.withdrawn and not record.is_finished:  # withdrawn while it was admitted
            await database_sync_to_async(tool_call_finish_early)(record=record, status="cancelled")
            if not record.is_finished:  # the cancellation's own write got there first
                found = await database_sync_to_async(tool_call_outcome_by_key)(key)
                if found is not None and found["status"] in FINISHED_STATUS:
                    return {**found, **_scheduling(record)}
        if record.is_finished:  # refused, a re-ask of a finished call, or withdrawn
            return {**tool_call_outcome(record=record), **_scheduling(record)}
        await emit({"type": "tool.started", "call_id": entry.call_id, "name": entry.name})
        if not admission.repeat and self.execution != "celery":
            loop = asyncio.get_running_loop()

            def notify(finished: Any) -> None:
                loop.call_soon_threadsafe(self.on_result, tool_call_outcome(record=finished))

            tool_call_run_inprocess(record=record, notify=notify)
        try:
            async with asyncio.timeout(record.timeout_seconds):
                outcome = await self._wait(key, entry)
        except TimeoutError:
            await database_sync_to_async(tool_call_finish_early)(record=record, status="timeout")
            found = await database_sync_to_async(tool_call_outcome_by_key)(key)
            outcome = found or {"status": "timeout", "response": {"error": "tool timed out"}}
        return {**outcome, **_scheduling(record)}

    async def _wait(self, key: str, entry: _Request) -> dict[str, Any]:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RESULT_POLL_SECONDS):
                    await entry.event.wait()
            entry.event.clear()
            if entry.outcome is not None:
                return entry.outcome
            found: dict[str, Any] | None = await database_sync_to_async(tool_call_outcome_by_key)(
                key
            )
            if found is not None and found["status"] in FINISHED_STATUS:
                return found

    def _forget_settled(self) -> None:
        settled = [key for key, entry in self._requests.items() if entry.settled is not None]
        for key in settled[:-SETTLED_KEPT]:
            entry = self._requests.pop(key)
            for call_id in [c for c, k in self._key_of.items() if k == key]:
                del self._key_of[call_id]
            del entry

    def on_result(self, message: dict[str, Any]) -> None:
        """The wake-up for a finished call (``tool.result``), with a copy of its outcome.

        One can arrive before its request is known here (after a resume, before the model
        asks again). It is kept (a few, newest) for that request.
        """
        key = str(message.get("key", ""))
        if message.get("status") not in FINISHED_STATUS or "response" not in message:
            return
        entry = self._requests.get(key)
        if entry is None:
            self._early[key] = message
            while len(self._early) > EARLY_RESULTS_KEPT:
                self._early.pop(next(iter(self._early)))
            return
        entry.outcome = message
        entry.event.set()

    async def on_cancellation(self, ids: Sequence[str], emit: Emit) -> None:
        for call_id in ids:
            key = self._key_of.get(call_id)
            entry = self._requests.get(key) if key is not None else None
            if entry is None or entry.settled is not None:
                continue  # unknown, or answered already
            entry.withdrawn.add(call_id)
            if await database_sync_to_async(tool_call_cancel_by_key)(key):
                entry.event.set()  # the poll reads "cancelled" at once

    async def close(self) -> None:
        tasks = [*self._asks, *(e.task for e in self._requests.values() if e.task is not None)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _scheduling(record: Any) -> dict[str, str]:
    return {"behavior": record.behavior, "scheduling": record.scheduling}
