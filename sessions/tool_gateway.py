"""The seam between the bridge and tool execution.

``ToolGateway`` decides what the model's function calls get. Until an agent has tools, the
answer to every call is the contract's refusal: ``{"error": "<reason>"}`` to the model and
``tool.finished`` with ``rejected`` to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from channels.db import database_sync_to_async
from google.genai import types

if TYPE_CHECKING:
    from tools.services import PendingCall, ToolAllowlist

log = logging.getLogger(__name__)

SendResponses = Callable[[list[types.FunctionResponse]], Awaitable[None]]
Emit = Callable[[dict[str, Any]], Awaitable[None]]


class ToolGateway(Protocol):
    def function_declarations(self) -> list[types.FunctionDeclaration]: ...

    async def on_tool_call(
        self, calls: Sequence[types.FunctionCall], send: SendResponses, emit: Emit
    ) -> None: ...

    async def on_cancellation(self, ids: Sequence[str], emit: Emit) -> None: ...

    def on_result(self, message: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


class NoTools:
    """An agent without an allowlist: every call is refused."""

    def function_declarations(self) -> list[types.FunctionDeclaration]:
        return []

    async def on_tool_call(
        self, calls: Sequence[types.FunctionCall], send: SendResponses, emit: Emit
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

    def on_result(self, message: dict[str, Any]) -> None:
        return None

    async def close(self) -> None:
        return None


# Audit status -> the client protocol's tool.finished status.
FINISHED_STATUS = {
    "succeeded": "ok",
    "failed": "error",
    "rejected": "rejected",
    "timeout": "timeout",
    "cancelled": "cancelled",
}
# A lost wake-up (or a result written while this process was away) is still found here.
RESULT_POLL_SECONDS = 1.0
ADMISSION_FAILED = "the tool call could not be admitted (the platform is unavailable)"
EARLY_RESULTS_KEPT = 32


class _Waiter:
    """One call waiting for its outcome: woken by ``tool.result`` or by its own poll."""

    __slots__ = ("event", "outcome")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.outcome: dict[str, Any] | None = None


class ServiceToolGateway:
    """Allowlisted tools: validate in a service, execute in Celery (or a worker thread when
    no broker is configured), wait for the persisted result, answer the model.

    Calls are admitted against the session's in-memory allowlist, reloaded when the tenant's
    allowlist version moves (``tools.allowlist_version``); the entry is read again when the
    call runs. An accepted call is written by whoever starts it; the ``tool.result``
    wake-up is sent only after the outcome is committed and carries a copy of it. Calls are
    known here by their call id (unique in a session); a lost wake-up costs at most
    ``RESULT_POLL_SECONDS``, then the database answers.
    """

    def __init__(
        self,
        *,
        session: Any,
        allowlist: ToolAllowlist,
        execution: str,
    ) -> None:
        self.session = session
        self.allowlist = allowlist
        self.execution = execution
        self._session_ref = str(session.pk)
        self._waiters: dict[str, _Waiter] = {}
        self._early: dict[str, dict[str, Any]] = {}
        self._calls: dict[str, asyncio.Task[None]] = {}
        self._pending: dict[str, PendingCall | None] = {}
        self._withdrawn: set[str] = set()  # cancelled by the model while being admitted

    def function_declarations(self) -> list[types.FunctionDeclaration]:
        return self.allowlist.declarations

    async def on_tool_call(
        self, calls: Sequence[types.FunctionCall], send: SendResponses, emit: Emit
    ) -> None:
        for call in calls:  # in parallel: each call answers the model when it is done
            call_id = call.id or ""
            if call_id in self._calls:
                continue  # a redelivered toolCall: the first one is already running
            task = asyncio.create_task(self._handle(call, send, emit), name="bridge-tool")
            self._calls[call_id] = task
            task.add_done_callback(functools.partial(self._forget, call_id))

    def _forget(self, call_id: str, _task: asyncio.Task[None]) -> None:
        self._calls.pop(call_id, None)
        self._pending.pop(call_id, None)
        self._withdrawn.discard(call_id)

    async def _handle(self, call: types.FunctionCall, send: SendResponses, emit: Emit) -> None:
        from tools.services import tool_call_admit, tool_call_admit_on_loop, tool_call_outcome

        name, call_id = call.name or "", call.id or ""
        # Before any await: a fast worker's wake-up must find the call waiting.
        waiter = self._waiters[call_id] = _Waiter()
        early = self._early.pop(call_id, None)
        if early is not None:
            waiter.outcome = early
            waiter.event.set()
        try:
            request = {
                "session": self.session,
                "agent": self.allowlist.agent,
                "call_id": call_id,
                "name": name,
                "args": call.args or {},
                "allowlist": self.allowlist,
            }
            admission = (
                await tool_call_admit_on_loop(**request) if self.execution == "celery" else None
            )
            if admission is None:  # anything but the common case: in a thread
                try:
                    admission = await database_sync_to_async(tool_call_admit)(
                        **request, enqueue=self.execution == "celery"
                    )
                except Exception:  # Redis or the database down: answered, never silent
                    log.exception("tool call %s could not be admitted", call_id)
                    await send([types.FunctionResponse(
                        id=call_id, name=name, response={"error": ADMISSION_FAILED}
                    )])  # fmt: skip
                    await emit({"type": "tool.finished", "call_id": call_id, "name": name,
                                "status": "error"})  # fmt: skip
                    return
            if admission.allowlist is not None:
                self.allowlist = admission.allowlist  # reloaded if an entry changed
            record = admission.record
            if record is not None and record.status in FINISHED_STATUS:
                outcome = tool_call_outcome(record=record)  # refused, or finished before
            elif call_id in self._withdrawn:  # the model withdrew it while it was admitted
                await self._withdraw(call_id, admission.pending, emit)
                return
            else:
                self._pending[call_id] = admission.pending
                await emit({"type": "tool.started", "call_id": call_id, "name": name})
                outcome = await self._run(call_id, admission.pending, admission.timeout, waiter)
        finally:
            self._waiters.pop(call_id, None)
        status = FINISHED_STATUS.get(outcome["status"], "error")
        if status == "cancelled":
            return  # the model withdrew the call: it expects no answer
        function_response = types.FunctionResponse(
            id=call_id, name=name, response=outcome["response"]
        )
        if admission.behavior == "NON_BLOCKING" and admission.scheduling:
            function_response.scheduling = types.FunctionResponseScheduling(admission.scheduling)
        await send([function_response])
        await emit({"type": "tool.finished", "call_id": call_id, "name": name, "status": status})

    async def _run(
        self, call_id: str, pending: PendingCall | None, limit_seconds: float, waiter: _Waiter
    ) -> dict[str, Any]:
        """Wait for the call's outcome; in-process, start it first. ``pending`` is None for
        a repeat of a call already written (its first admission runs it)."""
        from tools.services import tool_call_finish_early

        if self.execution != "celery" and pending is not None:
            self._start_in_thread(pending)
        try:
            async with asyncio.timeout(limit_seconds):
                return await self._wait_finished(call_id, waiter)
        except TimeoutError:
            await database_sync_to_async(tool_call_finish_early)(
                session_ref=self._session_ref, call_id=call_id, status="timeout", pending=pending
            )
            outcome: dict[str, Any] = await database_sync_to_async(_outcome)(
                self._session_ref, call_id
            )
            if outcome["status"] is None:  # a repeat whose first admission wrote nothing
                error = f"tool timed out after {limit_seconds:g}s"
                return {**outcome, "status": "timeout", "response": {"error": error}}
            return outcome

    def _start_in_thread(self, pending: PendingCall) -> None:
        """No broker (the embedded default): a worker thread, never the event loop.

        Not awaited and not a task: a thread cannot be interrupted, and execute bounds
        itself by the call's timeout. Its outcome wakes the call directly.
        """
        from tools.services import tool_call_execute, tool_call_outcome

        loop = asyncio.get_running_loop()

        def notify(finished: Any) -> None:
            loop.call_soon_threadsafe(self.on_result, tool_call_outcome(record=finished))

        context = contextvars.copy_context()  # the tenant scope goes along
        future = loop.run_in_executor(
            None, context.run, _in_thread, tool_call_execute, pending, notify
        )
        future.add_done_callback(_log_failure)

    async def _wait_finished(self, call_id: str, waiter: _Waiter) -> dict[str, Any]:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RESULT_POLL_SECONDS):
                    await waiter.event.wait()
            waiter.event.clear()
            if waiter.outcome is not None:
                return waiter.outcome
            outcome: dict[str, Any] = await database_sync_to_async(_outcome)(
                self._session_ref, call_id
            )
            if outcome["status"] in FINISHED_STATUS:
                return outcome

    def on_result(self, message: dict[str, Any]) -> None:
        """The wake-up for a finished call (``tool.result``), with a copy of its outcome.

        One can arrive before its call waits (a wake-up for a call this process has not yet
        admitted, after a resume). It is kept (a few, newest) for that call.
        """
        call_id = str(message.get("call_id", ""))
        outcome = (
            message if message.get("status") in FINISHED_STATUS and "response" in message else None
        )
        waiter = self._waiters.get(call_id)
        if waiter is None:
            if outcome is not None:
                self._early[call_id] = outcome
                while len(self._early) > EARLY_RESULTS_KEPT:
                    self._early.pop(next(iter(self._early)))
            return
        if outcome is not None:
            waiter.outcome = outcome
        waiter.event.set()

    async def on_cancellation(self, ids: Sequence[str], emit: Emit) -> None:

        for call_id in ids:
            task = self._calls.get(call_id)
            if task is None:
                continue  # unknown, or answered already
            if call_id not in self._pending:
                self._withdrawn.add(call_id)  # still being admitted: finished right after
                continue
            if await self._withdraw(call_id, self._pending[call_id], emit):
                task.cancel()

    async def _withdraw(self, call_id: str, pending: PendingCall | None, emit: Emit) -> bool:
        """Finish the call as ``cancelled`` (its task is revoked); True if this did it."""
        from tools.services import tool_call_finish_early

        changed: bool = await database_sync_to_async(tool_call_finish_early)(
            session_ref=self._session_ref, call_id=call_id, status="cancelled", pending=pending
        )
        if changed:
            await emit(
                {"type": "tool.finished", "call_id": call_id, "name": "", "status": "cancelled"}
            )
        return changed

    async def close(self) -> None:
        tasks = list(self._calls.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("in-process tool execution failed", exc_info=future.exception())


def _outcome(session_ref: str, call_id: str) -> dict[str, Any]:
    """What the database says of the call; ``status`` None while it has no row yet."""
    from tools.services import _record_of, tool_call_outcome

    record = _record_of(session_ref, call_id)
    if record is None:
        return {"type": "tool.result", "call_id": call_id, "status": None, "response": {}}
    return tool_call_outcome(record=record)


def _in_thread(
    execute: Callable[..., Any], pending: PendingCall, notify: Callable[..., None]
) -> Any:
    from django.db import connection

    try:
        return execute(pending=pending, notify=notify)
    finally:
        connection.close()  # a thread's own connection would otherwise outlive it
