"""The gateway, without a live session: wake-ups, withdrawals, admission failures, and one
request (idempotency key) answered once however often the model asks for it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from channels.db import database_sync_to_async
from google.genai import types

from sessions import tool_gateway
from sessions.tool_gateway import ADMISSION_FAILED, ServiceToolGateway
from tests.tools.conftest import (
    allow,
    make_session,
    tool_threads,  # noqa: F401 (a fixture, used by name)
)
from tools.allowlist import tool_allowlist_for_agent
from tools.idempotency import tool_call_key
from tools.models import OutboxEmail, ToolCallRecord
from tools.tasks import tool_call_execute_task
from voice_platform.tenancy.scope import tenant_scope

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("tool_threads")]

UTC = {"timezone": "UTC"}
EMAIL = {"to": "ann@example.com", "subject": "Hi", "body": "once"}


@database_sync_to_async
def setup(agent: Any) -> tuple[Any, Any]:
    from tools.services import tool_sync_registry

    tool_sync_registry()  # transactional tests flush the Tool rows
    allow(agent, "get_current_time")
    allow(agent, "send_email")
    with tenant_scope(agent.tenant_id):
        return make_session(agent), tool_allowlist_for_agent(agent=agent)


@database_sync_to_async
def records() -> list[ToolCallRecord]:
    return list(ToolCallRecord.unscoped.order_by("id"))


@database_sync_to_async
def outbox_count() -> int:
    return OutboxEmail.unscoped.count()


def key_of(session: Any, name: str, args: dict[str, Any], *, turn: int, occurrence: int = 0):
    return tool_call_key(
        session_ref=str(session.pk), turn=turn, name=name, args=args, occurrence=occurrence
    )


class Recorder:
    """What the gateway sends the model and emits to the client."""

    def __init__(self) -> None:
        self.sent: list[types.FunctionResponse] = []
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    async def send(self, responses: list[types.FunctionResponse]) -> None:
        self.sent.extend(responses)
        self._changed.set()

    async def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def answers(self, count: int, timeout: float = 10) -> dict[str, Any]:
        """Wait for ``count`` answers to the model; by call id."""
        async with asyncio.timeout(timeout):
            while len(self.sent) < count:
                self._changed.clear()
                await self._changed.wait()
        return {response.id: response.response for response in self.sent}

    def kinds(self) -> list[tuple[str, str]]:
        return [(event["type"], event["call_id"]) for event in self.events]


def call(call_id: str, name: str = "get_current_time", args: Any = None) -> types.FunctionCall:
    return types.FunctionCall(id=call_id, name=name, args=UTC if args is None else args)


def admit_without_broker(monkeypatch, after=None) -> list[Any]:
    """Admission as the gateway does it, but sending no Celery task (nothing runs the call);
    ``after(admission)`` runs in admission's thread. Returns the admissions made."""
    admissions: list[Any] = []
    real_admit = tool_gateway.tool_call_admit

    def admit(**kwargs: Any) -> Any:
        admission = real_admit(**{**kwargs, "dispatch": None})
        admissions.append(admission)
        if after is not None:
            after(admission)
        return admission

    monkeypatch.setattr(tool_gateway, "tool_call_admit", admit)
    return admissions


def counted_admissions(monkeypatch) -> list[Any]:
    """The real admission (and run), counted."""
    admissions: list[Any] = []
    real_admit = tool_gateway.tool_call_admit

    def admit(**kwargs: Any) -> Any:
        admission = real_admit(**kwargs)
        admissions.append(admission)
        return admission

    monkeypatch.setattr(tool_gateway, "tool_call_admit", admit)
    return admissions


# --- wake-ups --------------------------------------------------------------------------------


async def test_a_wake_up_that_beats_its_waiting_call_is_kept_for_it(alice_agent, monkeypatch):
    session, allowlist = await setup(alice_agent)
    gateway = ServiceToolGateway(session=session, allowlist=allowlist, execution="celery")
    loop = asyncio.get_running_loop()

    def finish_at_once(admission: Any) -> None:
        # A worker that already answered: the wake-up reaches the loop before the call waits.
        loop.call_soon_threadsafe(
            gateway.on_result,
            {"type": "tool.result", "key": admission.record.idempotency_key,
             "record_id": admission.record.pk, "call_id": "c1", "status": "succeeded",
             "response": {"answer": 42}},
        )  # fmt: skip

    admit_without_broker(monkeypatch, after=finish_at_once)
    out = Recorder()
    with tenant_scope(alice_agent.tenant_id):
        await gateway.on_tool_call([call("c1")], out.send, out.emit, 0)
        answers = await out.answers(1, timeout=5)
    # Answered from the early wake-up: the row is still queued (nothing ran the call), so
    # without it the call would have waited for its timeout and been answered with an error.
    assert answers == {"c1": {"answer": 42}}
    assert [r.status for r in await records()] == ["queued"]
    await gateway.close()


async def test_a_wake_up_for_a_request_not_known_here_is_dropped(alice_agent):
    session, allowlist = await setup(alice_agent)
    gateway = ServiceToolGateway(session=session, allowlist=allowlist, execution="celery")
    key = key_of(session, "get_current_time", UTC, turn=2)
    # After a resume the worker may answer this process before the model asks again: the
    # wake-up is sent only once the outcome is committed, so admission reads it from the row.
    gateway.on_result(
        {"type": "tool.result", "key": key, "record_id": 1, "call_id": "c-old",
         "status": "succeeded", "response": {"answer": 7}}
    )  # fmt: skip
    assert gateway._requests == {}
    await gateway.close()


# --- withdrawals and failures ----------------------------------------------------------------


async def withdraw_during_admission(agent, monkeypatch) -> Recorder:
    """The model withdraws a call while its admission runs (blocked in admission's thread)."""
    session, allowlist = await setup(agent)
    gateway = ServiceToolGateway(session=session, allowlist=allowlist, execution="celery")
    admitting, release = threading.Event(), threading.Event()
    real_admit = tool_gateway.tool_call_admit

    def slow_admit(**kwargs: Any) -> Any:
        admitting.set()
        release.wait(5)
        return real_admit(**kwargs)

    monkeypatch.setattr(tool_gateway, "tool_call_admit", slow_admit)
    sent = []
    monkeypatch.setattr(tool_call_execute_task, "apply_async", lambda **kw: sent.append(kw))
    out = Recorder()
    loop = asyncio.get_running_loop()
    with tenant_scope(agent.tenant_id):
        await gateway.on_tool_call([call("c1")], out.send, out.emit, 0)
        assert await loop.run_in_executor(None, admitting.wait, 5)
        withdrawal = asyncio.create_task(gateway.on_cancellation(["c1"], out.emit))
        await asyncio.sleep(0.05)  # the withdrawal waits for the database meanwhile
        release.set()
        await withdrawal
        await settled(out)
    await gateway.close()
    return out


async def settled(out: Recorder) -> None:
    async with asyncio.timeout(5):
        while not any(event["type"] == "tool.finished" for event in out.events):
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # an answer would be sent right after the event


async def test_a_call_withdrawn_while_being_admitted_is_cancelled_not_answered(
    alice_agent, monkeypatch
):
    out = await withdraw_during_admission(alice_agent, monkeypatch)
    assert out.sent == []  # the model expects no answer
    (record,) = await records()
    assert (record.call_id, record.status) == ("c1", "cancelled")
    assert out.events[-1] == {
        "type": "tool.finished", "call_id": "c1", "name": "get_current_time",
        "status": "cancelled",
    }  # fmt: skip


async def test_a_call_withdrawn_while_being_admitted_is_never_shown_as_started(
    alice_agent, monkeypatch
):
    out = await withdraw_during_admission(alice_agent, monkeypatch)
    assert [event["type"] for event in out.events] == ["tool.finished"]


async def test_a_call_withdrawn_before_its_admission_ran_is_cancelled_not_answered(
    alice_agent, monkeypatch
):
    session, allowlist = await setup(alice_agent)
    gateway = ServiceToolGateway(session=session, allowlist=allowlist, execution="celery")
    sent = []
    monkeypatch.setattr(tool_call_execute_task, "apply_async", lambda **kw: sent.append(kw))
    out = Recorder()
    with tenant_scope(alice_agent.tenant_id):
        await gateway.on_tool_call([call("c1")], out.send, out.emit, 0)
        # At once: its cancel finds no row yet; the gateway cancels it once admitted.
        await gateway.on_cancellation(["c1"], out.emit)
        await settled(out)
    assert out.sent == []
    (record,) = await records()
    assert (record.call_id, record.status) == ("c1", "cancelled")
    assert out.events == [
        {"type": "tool.finished", "call_id": "c1", "name": "get_current_time",
         "status": "cancelled"}
    ]  # fmt: skip
    # Its task was sent before the cancel; when it arrives, it runs nothing.
    (task,) = sent
    await database_sync_to_async(tool_call_execute_task.apply)(kwargs=task["kwargs"])
    assert [r.status for r in await records()] == ["cancelled"]
    await gateway.close()


async def test_a_call_that_cannot_be_admitted_is_answered_with_an_error(alice_agent, monkeypatch):
    session, allowlist = await setup(alice_agent)
    gateway = ServiceToolGateway(session=session, allowlist=allowlist, execution="celery")

    def redis_down(**kwargs: Any) -> Any:
        raise ConnectionError("redis down")

    monkeypatch.setattr(tool_gateway, "tool_call_admit", redis_down)
    out = Recorder()
    with tenant_scope(alice_agent.tenant_id):
        await gateway.on_tool_call([call("c1")], out.send, out.emit, 0)
        answers = await out.answers(1, timeout=5)
    assert answers == {"c1": {"error": ADMISSION_FAILED}}
    assert out.events == [
        {"type": "tool.finished", "call_id": "c1", "name": "get_current_time", "status": "error"}
    ]
    assert await records() == []
    await gateway.close()


async def test_a_call_the_broker_refuses_is_answered_with_its_failure(alice_agent, monkeypatch):
    session, allowlist = await setup(alice_agent)
    gateway = ServiceToolGateway(session=session, allowlist=allowlist, execution="celery")

    def broker_down(**kwargs: Any) -> Any:
        raise ConnectionError("broker down")

    monkeypatch.setattr(tool_call_execute_task, "apply_async", broker_down)
    out = Recorder()
    with tenant_scope(alice_agent.tenant_id):
        await gateway.on_tool_call([call("c1")], out.send, out.emit, 0)
        answers = await out.answers(1, timeout=5)
    (record,) = await records()
    assert record.status == "failed"
    assert answers == {"c1": {"error": record.error}}
    assert "broker down" in record.error
    assert out.kinds() == [("tool.finished", "c1")]
    assert out.events[0]["status"] == "error"
    await gateway.close()


# --- one request, asked more than once -------------------------------------------------------


async def test_two_asks_of_one_request_are_answered_from_one_admission(alice_agent, monkeypatch):
    session, allowlist = await setup(alice_agent)
    gateway = ServiceToolGateway(session=session, allowlist=allowlist, execution="inprocess")
    admissions = counted_admissions(monkeypatch)
    out = Recorder()
    with tenant_scope(alice_agent.tenant_id):
        await gateway.on_tool_call([call("c1", "send_email", EMAIL)], out.send, out.emit, 4)
        gateway.on_reconnect()  # the model is asked the turn again: the same request, new id
        await gateway.on_tool_call([call("c2", "send_email", EMAIL)], out.send, out.emit, 4)
        answers = await out.answers(2)
    (record,) = await records()
    assert len(admissions) == 1
    assert record.status == "succeeded"
    assert record.idempotency_key == key_of(session, "send_email", EMAIL, turn=4)
    assert answers == {"c1": record.result, "c2": record.result}
    assert await outbox_count() == 1
    # The client sees the request once, under its first call id.
    assert out.kinds() == [("tool.started", "c1"), ("tool.finished", "c1")]
    await gateway.close()


async def test_after_a_reconnect_the_same_calls_are_the_same_requests(alice_agent):
    session, allowlist = await setup(alice_agent)
    gateway = ServiceToolGateway(session=session, allowlist=allowlist, execution="inprocess")
    out = Recorder()
    mail = ("send_email", EMAIL)
    with tenant_scope(alice_agent.tenant_id):
        # Asked twice on purpose in one turn: two requests (occurrences 0 and 1). One at a
        # time: in-memory SQLite cannot take two writers at once.
        for count, call_id in enumerate(("a1", "a2"), start=1):
            await gateway.on_tool_call([call(call_id, *mail)], out.send, out.emit, 1)
            await out.answers(count)
        gateway.on_reconnect()
        await gateway.on_tool_call([call("b1", *mail), call("b2", *mail)], out.send, out.emit, 1)
        answers = await out.answers(4)
    first, second = await records()
    assert [first.call_id, second.call_id] == ["a1", "a2"]
    assert [first.idempotency_key, second.idempotency_key] == [
        key_of(session, *mail, turn=1, occurrence=n) for n in (0, 1)
    ]
    # Each re-ask is answered from its own first ask: its own email.
    assert answers["b1"] == answers["a1"] == first.result
    assert answers["b2"] == answers["a2"] == second.result
    assert first.result["outbox_id"] != second.result["outbox_id"]
    assert await outbox_count() == 2
    assert sorted(e["call_id"] for e in out.events if e["type"] == "tool.finished") == [
        "a1",
        "a2",
    ]
    await gateway.close()


async def test_without_a_reconnect_an_identical_call_is_a_second_request(alice_agent, monkeypatch):
    session, allowlist = await setup(alice_agent)
    gateway = ServiceToolGateway(session=session, allowlist=allowlist, execution="inprocess")
    admissions = counted_admissions(monkeypatch)
    out = Recorder()
    with tenant_scope(alice_agent.tenant_id):
        await gateway.on_tool_call([call("c1", "send_email", EMAIL)], out.send, out.emit, 3)
        await out.answers(1)
        await gateway.on_tool_call([call("c2", "send_email", EMAIL)], out.send, out.emit, 3)
        answers = await out.answers(2)
    first, second = await records()
    assert len(admissions) == 2
    assert not any(a.repeat for a in admissions)
    assert second.idempotency_key == key_of(session, "send_email", EMAIL, turn=3, occurrence=1)
    assert (answers["c1"], answers["c2"]) == (first.result, second.result)
    assert await outbox_count() == 2
    assert [kind for kind, _ in out.kinds()].count("tool.started") == 2
    await gateway.close()


class Observed:
    """What a gateway reports to its observer (timing, metrics, traces)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[tuple[str, str]] = []

    def tool_started(self, key: str, name: str, call_id: str | None = None) -> None:
        self.started.append(name)

    def tool_finished(self, key: str, name: str, status: str, seconds: float) -> None:
        self.finished.append((name, status))


async def test_a_reask_on_another_process_is_answered_from_the_row(alice_agent, monkeypatch):
    session, allowlist = await setup(alice_agent)
    first = ServiceToolGateway(session=session, allowlist=allowlist, execution="inprocess")
    seen_first, seen_resumed = Observed(), Observed()
    first.observe(seen_first)
    out = Recorder()
    with tenant_scope(alice_agent.tenant_id):
        await first.on_tool_call([call("c1", "send_email", EMAIL)], out.send, out.emit, 2)
        await out.answers(1)
    await first.close()
    # The session resumes in another server process: a new gateway, the model asks again.
    resumed = ServiceToolGateway(session=session, allowlist=allowlist, execution="inprocess")
    resumed.observe(seen_resumed)
    admissions = counted_admissions(monkeypatch)
    again = Recorder()
    with tenant_scope(alice_agent.tenant_id):
        await resumed.on_tool_call([call("c7", "send_email", EMAIL)], again.send, again.emit, 2)
        answers = await again.answers(1)
    (record,) = await records()
    assert [a.repeat for a in admissions] == [True]
    assert answers == {"c7": record.result}
    assert await outbox_count() == 1
    # Answered at once from the finished row; the client's event names the first ask.
    assert again.events == [
        {"type": "tool.finished", "call_id": "c1", "name": "send_email", "status": "ok"}
    ]
    await resumed.close()
    # Reported once, where it ran: the re-ask's stored outcome is not a second call.
    assert (seen_first.started, seen_first.finished) == (
        ["send_email"],
        [("send_email", "succeeded")],
    )
    assert (seen_resumed.started, seen_resumed.finished) == ([], [])
