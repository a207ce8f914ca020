"""The gateway's wake-up handling, without a live session."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from google.genai import types

from sessions.tool_gateway import ServiceToolGateway
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
    sent: list[types.FunctionResponse] = []
    done = asyncio.Event()

    async def send(responses: list[types.FunctionResponse]) -> None:
        sent.extend(responses)
        done.set()

    async def emit(event: dict[str, Any]) -> None:
        return None

    started = time.monotonic()
    with tenant_scope(alice_agent.tenant_id):
        call = types.FunctionCall(id="c1", name="get_current_time", args={"timezone": "UTC"})
        await gateway.on_tool_call([call], send, emit)
        await asyncio.wait_for(done.wait(), 5)
    # Answered from the early wake-up, not from the database after the 1 s poll (there
    # is no record there: nothing ran the call).
    assert time.monotonic() - started < 0.5
    assert sent[0].response == {"answer": 42}
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
    sent: list[types.FunctionResponse] = []
    done = asyncio.Event()

    async def send(responses: list[types.FunctionResponse]) -> None:
        sent.extend(responses)
        done.set()

    async def emit(event: dict[str, Any]) -> None:
        return None

    started = time.monotonic()
    with tenant_scope(alice_agent.tenant_id):
        call = types.FunctionCall(id="c9", name="get_current_time", args={"timezone": "UTC"})
        await gateway.on_tool_call([call], send, emit)
        await asyncio.wait_for(done.wait(), 5)
    assert time.monotonic() - started < 0.5
    assert sent[0].response == {"answer": 7}
    assert "c8" not in gateway._early  # a bare wake-up carries nothing worth keeping
    await gateway.close()
