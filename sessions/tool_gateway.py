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
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from google.genai import types

from tools.calls import (
    FINISHED_STATUS,
    Admission,
    ToolAllowlist,
    ToolCallRequest,
    canonical_arguments,
    tool_call_admit,
    tool_call_cancel_by_key,
    tool_call_enqueue,
    tool_call_finish_early,
    tool_call_outcome,
    tool_call_outcome_by_key,
    tool_call_run_inprocess,
)
from voice_platform.db_threads import db_async

log = logging.getLogger(__name__)

SendResponses = Callable[[list[types.FunctionResponse]], Awaitable[None]]
Emit = Callable[[dict[str, Any]], Awaitable[None]]

# A lost wake-up (or a result written while this process was away) is still found here.
RESULT_POLL_SECONDS = 1.0
ADMISSION_FAILED = "the tool call could not be admitted (the platform is unavailable)"
OUTCOME_LOST = "the tool call's outcome could not be read (the platform is unavailable)"
SETTLED_KEPT = 64


class ToolObserver(Protocol):
    """Told of every request a gateway starts and settles (timing, metrics, traces)."""

    def tool_started(self, key: str, name: str, call_id: str | None = None) -> None: ...

    def tool_finished(self, key: str, name: str, status: str, seconds: float) -> None: ...


class _Unobserved:
    def tool_started(self, key: str, name: str, call_id: str | None = None) -> None:
        return None

    def tool_finished(self, key: str, name: str, status: str, seconds: float) -> None:
        return None


class ToolGateway(Protocol):
    def observe(self, observer: ToolObserver) -> None: ...

    def function_declarations(self) -> list[types.FunctionDeclaration]: ...

    def first_turn(self) -> int: ...

    async def on_tool_call(
        self, calls: Sequence[types.FunctionCall], send: SendResponses, emit: Emit, turn: int
    ) -> None: ...

    async def on_cancellation(self, ids: Sequence[str], emit: Emit) -> None: ...

    def on_reconnect(self) -> None: ...

    def on_result(self, message: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


class NoTools:
    """An agent without an allowlist: every call is refused."""

    observer: ToolObserver = _Unobserved()

    def observe(self, observer: ToolObserver) -> None:
        self.observer = observer

    def function_declarations(self) -> list[types.FunctionDeclaration]:
        return []

    def first_turn(self) -> int:
        return 0

    async def on_tool_call(
        self, calls: Sequence[types.FunctionCall], send: SendResponses, emit: Emit, turn: int
    ) -> None:
        responses = []
        for call in calls:
            name = call.name or ""
            self.observer.tool_started(call.id or "", name)
            self.observer.tool_finished(call.id or "", name, "rejected", 0.0)
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

    __slots__ = ("call_id", "call_ids", "event", "name", "outcome", "settled", "started",
                 "task", "withdrawn")  # fmt: skip

    def __init__(self, call_id: str, name: str) -> None:
        self.started = time.monotonic()
        self.call_id = call_id  # the first ask's id: what the client's events carry
        self.call_ids = [call_id]  # every ask's id
        self.name = name
        self.event = asyncio.Event()  # set by a wake-up
        self.outcome: dict[str, Any] | None = None  # from a wake-up
        self.task: asyncio.Task[dict[str, Any]] | None = None
        self.settled: dict[str, Any] | None = None  # the final outcome
        self.withdrawn: set[str] = set()  # call ids the model cancelled


class ServiceToolGateway:
    """Allowlisted tools: admit in a service, execute in Celery (or a thread of this process
    when no broker is configured), wait for the persisted outcome, answer the model.

    ``first_turn`` is the first conversation position no earlier tool call of the session
    used (``tool_call_next_turn``): new turns count from there.
    """

    def __init__(
        self,
        *,
        session: Any,
        allowlist: ToolAllowlist,
        execution: str,
        first_turn: int = 0,
    ) -> None:
        self.session = session
        self.allowlist = allowlist
        self.execution = execution
        self._first_turn = first_turn
        self._requests: dict[str, _Request] = {}  # by key; the newest SETTLED_KEPT settled
        self._key_of: dict[str, str] = {}  # call id -> key
        self._occurrences: Counter[tuple[int, str, str]] = Counter()
        self._asks: dict[str, asyncio.Task[None]] = {}  # call id -> its pending answer
        self.observer: ToolObserver = _Unobserved()

    def observe(self, observer: ToolObserver) -> None:
        self.observer = observer

    def function_declarations(self) -> list[types.FunctionDeclaration]:
        return self.allowlist.declarations

    def first_turn(self) -> int:
        return self._first_turn

    async def on_tool_call(
        self, calls: Sequence[types.FunctionCall], send: SendResponses, emit: Emit, turn: int
    ) -> None:
        """Each call of a ``toolCall`` in parallel; each answers the model when it is done.
        ``turn`` is the conversation position the calls answer (``sessions.uplink``)."""
        for call in calls:
            call_id, name, args = call.id or "", call.name or "", dict(call.args or {})
            if call_id in self._key_of:
                continue  # a redelivered toolCall: this id is answered (or will be) once
            request = self._request_for(call_id, name, args, turn)
            self._key_of[call_id] = request.key
            entry = self._requests.get(request.key)  # a re-ask joins its first ask
            if entry is None:
                entry = self._start(request, emit)
            else:
                entry.call_ids.append(call_id)
            ask = asyncio.create_task(self._answer(call_id, name, entry, send), name="bridge-tool")
            self._asks[call_id] = ask
            ask.add_done_callback(functools.partial(self._answered, call_id))

    def _answered(self, call_id: str, _task: asyncio.Task[None]) -> None:
        self._asks.pop(call_id, None)

    def _start(self, request: ToolCallRequest, emit: Emit) -> _Request:
        entry = self._requests[request.key] = _Request(request.call_id, request.name)
        entry.task = asyncio.create_task(
            self._settle(request.key, request, entry, emit), name="bridge-tool-settle"
        )
        return entry

    def _request_for(
        self, call_id: str, name: str, args: dict[str, Any], turn: int
    ) -> ToolCallRequest:
        """The request this call makes: the how-many-th identical call of its turn."""
        counted = (turn, name, canonical_arguments(args))
        occurrence = self._occurrences[counted]
        self._occurrences[counted] += 1
        return ToolCallRequest(
            tenant_id=self.session.tenant_id, session_id=self.session.pk,
            end_user_id=self.session.end_user_id, call_id=call_id, name=name, args=args,
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
        """Admit the request (or find it admitted), wait for its outcome; emits its events.
        Always ends with an outcome: the model is never left without an answer."""
        try:
            admission: Admission = await db_async(tool_call_admit)(
                request=request, allowlist=self.allowlist, dispatch=self._dispatch()
            )
        except Exception:  # the database or the cache down: answered, never silent
            log.exception("tool call %s could not be admitted", entry.call_id)
            self.observer.tool_started(key, request.name, request.call_id)
            observed = True
            outcome: dict[str, Any] = {"status": "failed", "response": {"error": ADMISSION_FAILED}}
        else:
            # A request admitted and settled before (a resume replaying its turn) was
            # reported then: its stored outcome again would count the call twice. One still
            # running is reported here (the connection that started it is gone).
            observed = not admission.repeat or not admission.record.is_finished
            if observed:
                self.observer.tool_started(key, request.name, request.call_id)
            self.allowlist = admission.allowlist  # reloaded if an entry changed
            entry.call_id = admission.record.call_id  # a re-ask's events name the first ask
            try:
                outcome = await self._outcome_of(admission, entry, emit)
            except Exception:  # the database went away while the call waited
                log.exception("tool call %s: its outcome could not be read", entry.call_id)
                outcome = {"status": "failed", "response": {"error": OUTCOME_LOST}}
        entry.settled = outcome
        self._forget_settled()
        status = FINISHED_STATUS.get(str(outcome.get("status")), "error")
        audited = str(outcome.get("status"))  # the audit log's status, e.g. "succeeded"
        audited = audited if audited in FINISHED_STATUS else "failed"
        if observed:
            self.observer.tool_finished(key, entry.name, audited, time.monotonic() - entry.started)
        with contextlib.suppress(Exception):  # the client may be gone; the model is answered
            await emit(
                {"type": "tool.finished", "call_id": entry.call_id, "name": entry.name,
                 "status": status}
            )  # fmt: skip
        return outcome

    def _dispatch(self) -> Callable[[Any], None]:
        """Where an accepted call goes once its row is committed (in the database thread)."""
        if self.execution == "celery":
            return tool_call_enqueue
        loop = asyncio.get_running_loop()

        def notify(finished: Any) -> None:
            loop.call_soon_threadsafe(self.on_result, tool_call_outcome(record=finished))

        return lambda record: tool_call_run_inprocess(record=record, notify=notify)

    async def _outcome_of(
        self, admission: Admission, entry: _Request, emit: Emit
    ) -> dict[str, Any]:
        record = admission.record
        key = record.idempotency_key or ""  # the row's: a reused call id names another one
        if entry.withdrawn and not record.is_finished:  # withdrawn while it was admitted
            await db_async(tool_call_finish_early)(record=record, status="cancelled")
            if not record.is_finished:  # the cancellation's own write got there first
                found = await db_async(tool_call_outcome_by_key)(key)
                if found is not None and found["status"] in FINISHED_STATUS:
                    return {**found, **_scheduling(record)}
        if record.is_finished:  # refused, a re-ask of a finished call, or withdrawn
            return {**tool_call_outcome(record=record), **_scheduling(record)}
        with contextlib.suppress(Exception):
            await emit({"type": "tool.started", "call_id": entry.call_id, "name": entry.name})
        try:
            async with asyncio.timeout(record.timeout_seconds):
                outcome = await self._wait(key, entry)
        except TimeoutError:
            await db_async(tool_call_finish_early)(record=record, status="timeout")
            found = await db_async(tool_call_outcome_by_key)(key)
            outcome = found or {"status": "timeout", "response": {"error": "tool timed out"}}
        return {**outcome, **_scheduling(record)}

    async def _wait(self, key: str, entry: _Request) -> dict[str, Any]:
        """The outcome: from its wake-up, else from the row, read every poll interval."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RESULT_POLL_SECONDS):
                    await entry.event.wait()
            entry.event.clear()
            if entry.outcome is not None:
                return entry.outcome
            try:
                found: dict[str, Any] | None = await db_async(tool_call_outcome_by_key)(key)
            except Exception:  # the database is away: keep waiting (the call's timeout bounds it)
                log.warning(
                    "tool call %s: polling its outcome failed", entry.call_id, exc_info=True
                )
                continue
            if found is not None and found["status"] in FINISHED_STATUS:
                return found

    def _forget_settled(self) -> None:
        settled = [key for key, entry in self._requests.items() if entry.settled is not None]
        for key in settled[:-SETTLED_KEPT]:
            for call_id in self._requests.pop(key).call_ids:
                self._key_of.pop(call_id, None)

    def on_result(self, message: dict[str, Any]) -> None:
        """The wake-up for a finished call (``tool.result``), with a copy of its outcome.

        Sent only once the outcome is committed; one for a request not known here (yet) is
        dropped: its admission reads the row, which already says it.
        """
        entry = self._requests.get(str(message.get("key", "")))
        if entry is None or message.get("status") not in FINISHED_STATUS:
            return
        if "response" in message:
            entry.outcome = message
        entry.event.set()

    async def on_cancellation(self, ids: Sequence[str], emit: Emit) -> None:
        for call_id in ids:
            key = self._key_of.get(call_id)
            entry = self._requests.get(key) if key is not None else None
            if key is None or entry is None or entry.settled is not None:
                continue  # unknown, or answered already
            entry.withdrawn.add(call_id)
            if await db_async(tool_call_cancel_by_key)(key):
                entry.event.set()  # the poll reads "cancelled" at once

    async def close(self) -> None:
        tasks: list[asyncio.Task[Any]] = [*self._asks.values()]
        tasks += [e.task for e in self._requests.values() if e.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _scheduling(record: Any) -> dict[str, str]:
    return {"behavior": record.behavior, "scheduling": record.scheduling}
