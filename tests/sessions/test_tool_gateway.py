"""The gateway's wake-up handling, without a live session."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from google.genai import types

from sessions.tool_gateway import ADMISSION_FAILED, ServiceToolGateway
from tests.tools.conftest import allow, make_session
from tools import services
from tools.services import tool_allowlist_for_agent
from voice_platform.tenancy.scope import tenant_scope

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def setup(agent: Any) -> tuple[Any, Any]:
    allow(agent, "get_current_time")
    with tenant_scope(agent.tenant_id):
        return make_session(agent), tool_allowlist_for_agent(agent=agent)


class Recorder:
    """What the gateway sends the model and emits to the client."""

    def __init__(self) -> None:
        self.sent: list[types.FunctionResponse] = []
        self.events: list[dict[str, Any]] = []
        self.done = asyncio.Event()

    async def send(self, responses: list[types.FunctionResponse]) -> None:
        self.sent.extend(responses)
        self.done.set()

    async def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)


async def stand_aside(**kwargs: Any) -> None:
    return None  # no admission on the loop: the thread's (patched) path, and no broker


async def test_a_wake_up_that_beats_its_waiting_call_is_kept_for_it(alice_agent, monkeypatch):
    session, allowlist = await setup(alice_agent)
    gateway = ServiceToolGateway(session=session, allowlist=allowlist, execution="celery")
    loop = asyncio.get_running_loop()
    admit = services.tool_call_admit

    def admit_then_finish_at_once(**kwargs: Any) -> Any:
        admission = admit(**{**kwargs, "enqueue": False})  # no broker here: nothing runs
        # A worker that already answered: the wake-up reaches the loop before the call waits.
        loop.call_soon_threadsafe(
            gateway.on_result,
            {"type": "tool.result", "record_id": 1, "call_id": "c1",
             "status": "succeeded", "response": {"answer": 42}},
        )  # fmt: skip
        return admission

    monkeypatch.setattr(services, "tool_call_admit", admit_then_finish_at_once)
    monkeypatch.setattr(services, "tool_call_admit_on_loop", stand_aside)
    out = Recorder()

    started = time.monotonic()
    with tenant_scope(alice_agent.tenant_id):
        call = types.FunctionCall(id="c1", name="get_current_time", args={"timezone": "UTC"})
        await gateway.on_tool_call([call], out.send, out.emit)
        await asyncio.wait_for(out.done.wait(), 5)
    # Answered from the early wake-up, not from the database after the 1 s poll (there
    # is no record there: nothing ran the call).
    assert time.monotonic() - started < 0.5
    assert out.sent[0].response == {"answer": 42}
    await gateway.close()


async def test_a_wake_up_for_a_call_not_yet_seen_is_kept_for_it(alice_agent, monkeypatch):
    session, allowlist = await setup(alice_agent)
    gateway = ServiceToolGateway(session=session, allowlist=allowlist, execution="celery")
    admit = services.tool_call_admit
    monkeypatch.setattr(
        services, "tool_call_admit", lambda **kwargs: admit(**{**kwargs, "enqueue": False})
    )
    monkeypatch.setattr(services, "tool_call_admit_on_loop", stand_aside)
    # After a resume the worker may answer this process before the model repeats the call.
    gateway.on_result(
        {"type": "tool.result", "record_id": 1, "call_id": "c9", "status": "succeeded",
         "response": {"answer": 7}}
    )  # fmt: skip
    gateway.on_result({"type": "tool.result", "record_id": 2, "call_id": "c8"})  # no outcome
    out = Recorder()

    started = time.monotonic()
    with tenant_scope(alice_agent.tenant_id):
        call = types.FunctionCall(id="c9", name="get_current_time", args={"timezone": "UTC"})
        await gateway.on_tool_call([call], out.send, out.emit)
        await asyncio.wait_for(out.done.wait(), 5)
    assert time.monotonic() - started < 0.5
    assert out.sent[0].response == {"answer": 7}
    assert "c8" not in gateway._early  # a bare wake-up carries nothing worth keeping
    await gateway.close()


async def test_a_call_withdrawn_while_being_admitted_is_cancelled_not_answered(
    alice_agent, monkeypatch
):
    from tools.models import ToolCallRecord

    session, allowlist = await setup(alice_agent)
    gateway = ServiceToolGateway(session=session, allowlist=allowlist, execution="celery")
    admit = services.tool_call_admit
    admitting, release = threading.Event(), threading.Event()

    def slow_admit(**kwargs: Any) -> Any:
        admitting.set()
        release.wait(5)
        return admit(**{**kwargs, "enqueue": False})

    monkeypatch.setattr(services, "tool_call_admit", slow_admit)
    monkeypatch.setattr(services, "tool_call_admit_on_loop", stand_aside)
    out = Recorder()

    with tenant_scope(alice_agent.tenant_id):
        call = types.FunctionCall(id="c1", name="get_current_time", args={"timezone": "UTC"})
        await gateway.on_tool_call([call], out.send, out.emit)
        task = gateway._calls["c1"]
        assert await asyncio.get_running_loop().run_in_executor(None, admitting.wait, 5)
        await gateway.on_cancellation(["c1"], out.emit)  # the model withdraws it meanwhile
        release.set()
        await asyncio.wait_for(task, 5)
    assert out.sent == []  # the model expects no answer
    assert out.events == [
        {"type": "tool.finished", "call_id": "c1", "name": "", "status": "cancelled"}
    ]
    record = await database_sync_to_async(ToolCallRecord.unscoped.get)()
    assert (record.call_id, record.status) == ("c1", "cancelled")
    await gateway.close()


async def test_a_call_that_cannot_be_admitted_is_answered_with_an_error(alice_agent, monkeypatch):
    session, allowlist = await setup(alice_agent)
    gateway = ServiceToolGateway(session=session, allowlist=allowlist, execution="celery")

    def redis_down(**kwargs: Any) -> Any:
        raise ConnectionError("redis down")

    monkeypatch.setattr(services, "tool_call_admit", redis_down)
    monkeypatch.setattr(services, "tool_call_admit_on_loop", stand_aside)
    out = Recorder()

    with tenant_scope(alice_agent.tenant_id):
        call = types.FunctionCall(id="c1", name="get_current_time", args={"timezone": "UTC"})
        await gateway.on_tool_call([call], out.send, out.emit)
        await asyncio.wait_for(gateway._calls["c1"], 5)
    assert [(r.id, r.response) for r in out.sent] == [("c1", {"error": ADMISSION_FAILED})]
    assert out.events == [
        {"type": "tool.finished", "call_id": "c1", "name": "get_current_time", "status": "error"}
    ]
    await gateway.close()
