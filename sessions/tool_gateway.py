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
from typing import Any, Protocol

from channels.db import database_sync_to_async
from google.genai import types

log = logging.getLogger(__name__)

SendResponses = Callable[[list[types.FunctionResponse]], Awaitable[None]]
Emit = Callable[[dict[str, Any]], Awaitable[None]]


class ToolGateway(Protocol):
    def function_declarations(self) -> list[types.FunctionDeclaration]: ...

    async def on_tool_call(
        self, calls: Sequence[types.FunctionCall], send: SendResponses, emit: Emit
    ) -> None: ...

    async def on_cancellation(self, ids: Sequence[str], emit: Emit) -> None: ...

    def on_result(self, record_id: int) -> None: ...

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

    def on_result(self, record_id: int) -> None:
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


class ServiceToolGateway:
    """Allowlisted tools: validate in a service, execute in Celery (or a worker thread when
    no broker is configured), wait for the persisted result, answer the model.

    The channel-layer ``tool.result`` message only wakes the waiting call up; the result
    always comes from the database, so a lost message costs at most ``RESULT_POLL_SECONDS``.
    """

    def __init__(
        self,
        *,
        session_id: Any,
        agent: Any,
        declarations: list[types.FunctionDeclaration],
        execution: str,
    ) -> None:
        self.session_id = session_id
        self.agent = agent
        self.declarations = declarations
        self.execution = execution
        self._wakeups: dict[int, asyncio.Event] = {}
        self._calls: dict[str, asyncio.Task[None]] = {}
        self._records: dict[str, int] = {}

    def function_declarations(self) -> list[types.FunctionDeclaration]:
        return self.declarations

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
        self._records.pop(call_id, None)

    async def _handle(self, call: types.FunctionCall, send: SendResponses, emit: Emit) -> None:
        from tools.services import tool_call_admit, tool_call_response

        name, call_id = call.name or "", call.id or ""
        session = await database_sync_to_async(_session)(self.session_id)
        admission = await database_sync_to_async(tool_call_admit)(
            session=session, agent=self.agent, call_id=call_id, name=name, args=call.args or {}
        )
        record = admission.record
        if admission.accepted:
            self._records[call_id] = record.pk
            await emit({"type": "tool.started", "call_id": call_id, "name": name})
            record = await self._run(record.pk, admission.timeout)
        response = await database_sync_to_async(tool_call_response)(record=record)
        status = FINISHED_STATUS.get(record.status, "error")
        if status == "cancelled":
            return  # the model withdrew the call: it expects no answer
        function_response = types.FunctionResponse(id=call_id, name=name, response=response)
        if admission.behavior == "NON_BLOCKING" and admission.scheduling:
            function_response.scheduling = types.FunctionResponseScheduling(admission.scheduling)
        await send([function_response])
        await emit({"type": "tool.finished", "call_id": call_id, "name": name, "status": status})

    async def _run(self, record_id: int, limit_seconds: float) -> Any:
        from tools.services import tool_call_enqueue, tool_call_execute, tool_call_finish_early

        self._wakeups[record_id] = asyncio.Event()
        try:
            if self.execution == "celery":
                await database_sync_to_async(_enqueue)(tool_call_enqueue, record_id)
            else:
                # No broker (the embedded default): a worker thread, never the event loop.
                # Not awaited and not a task: a thread cannot be interrupted, and execute
                # bounds itself by the call's timeout. Its result arrives like Celery's.
                context = contextvars.copy_context()  # the tenant scope goes along
                future = asyncio.get_running_loop().run_in_executor(
                    None, context.run, _in_thread, tool_call_execute, record_id
                )
                future.add_done_callback(_log_failure)
            try:
                async with asyncio.timeout(limit_seconds):
                    return await self._wait_finished(record_id)
            except TimeoutError:
                await database_sync_to_async(tool_call_finish_early)(
                    record_id=record_id, status="timeout"
                )
                return await database_sync_to_async(_record)(record_id)
        finally:
            self._wakeups.pop(record_id, None)

    async def _wait_finished(self, record_id: int) -> Any:
        wakeup = self._wakeups[record_id]
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RESULT_POLL_SECONDS):
                    await wakeup.wait()
            wakeup.clear()
            record = await database_sync_to_async(_record)(record_id)
            if record.status in FINISHED_STATUS:
                return record

    def on_result(self, record_id: int) -> None:
        """The channel-layer wake-up for a finished call (``tool.result``)."""
        wakeup = self._wakeups.get(record_id)
        if wakeup is not None:
            wakeup.set()

    async def on_cancellation(self, ids: Sequence[str], emit: Emit) -> None:
        from tools.services import tool_call_finish_early

        for call_id in ids:
            record_id = self._records.get(call_id)
            task = self._calls.get(call_id)
            if record_id is None or task is None:
                continue
            changed = await database_sync_to_async(tool_call_finish_early)(
                record_id=record_id, status="cancelled"
            )
            if changed:
                task.cancel()
                await emit(
                    {"type": "tool.finished", "call_id": call_id, "name": "", "status": "cancelled"}
                )

    async def close(self) -> None:
        tasks = list(self._calls.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("in-process tool execution failed", exc_info=future.exception())


def _session(session_id: Any) -> Any:
    from sessions.models import VoiceSession

    return VoiceSession.objects.get(pk=session_id)


def _record(record_id: int) -> Any:
    from tools.models import ToolCallRecord

    return ToolCallRecord.objects.get(pk=record_id)


def _enqueue(enqueue: Callable[..., str], record_id: int) -> str:
    from django.db import transaction

    with transaction.atomic():  # on_commit fires at the end of this block
        return enqueue(record=_record(record_id))


def _in_thread(execute: Callable[..., Any], record_id: int) -> Any:
    from django.db import connection

    try:
        return execute(record_id=record_id)
    finally:
        connection.close()  # a thread's own connection would otherwise outlive it
