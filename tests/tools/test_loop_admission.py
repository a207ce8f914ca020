"""Admission on the event loop: one Redis round trip for the common case, the thread for
everything else (needs Redis as the cache and the broker, as in CI)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import async_to_sync

from conftest import require_redis
from tests.tools.conftest import allow
from tools.models import ToolCallRecord
from tools.services import (
    agent_tool_update,
    tool_allowlist_for_agent,
    tool_call_admit,
    tool_call_admit_on_loop,
)
from voice_platform.tenancy.scope import tenant_scope

pytestmark = pytest.mark.django_db(transaction=True)
UTC = {"timezone": "UTC"}


@pytest.fixture
def queue(settings) -> Any:
    import redis

    url = require_redis()
    settings.TOOL_EXECUTION = "celery"
    name = settings.TOOL_CELERY_QUEUE = f"test-loop-admission-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(url)
    yield lambda: [json.loads(raw) for raw in reversed(client.lrange(name, 0, -1))]
    client.delete(name)


def on_loop(agent, session, name, args, call_id="c1", allowlist=None):
    with tenant_scope(agent.tenant_id):
        allowlist = allowlist or tool_allowlist_for_agent(agent=agent)
        return async_to_sync(tool_call_admit_on_loop)(
            session=session, agent=agent, call_id=call_id, name=name, args=args,
            allowlist=allowlist,
        )  # fmt: skip


def test_an_allowed_call_is_counted_and_published_in_one_step(queue, alice_agent, alice_session):
    allow(alice_agent, "get_current_time")
    admission = on_loop(alice_agent, alice_session, "get_current_time", UTC)
    assert admission.accepted
    pending = admission.pending
    assert admission.record is None
    assert not ToolCallRecord.unscoped.exists()  # its worker writes it
    (message,) = queue()
    assert message["headers"]["id"] == pending.task_id
    assert message["headers"]["task"] == "tools.tasks.tool_call_execute_task"
    body = json.loads(base64.b64decode(message["body"]))
    assert body[1] == {"tenant_id": alice_agent.tenant_id, "call": pending.as_message()}


def test_over_the_rate_limit_is_written_as_refused_and_not_published(
    queue, alice_agent, alice_session
):
    allow(alice_agent, "get_current_time", rate_limit="2/min")
    first, second, third = (
        on_loop(alice_agent, alice_session, "get_current_time", UTC, f"c{n}") for n in (1, 2, 3)
    )
    assert first.accepted
    assert second.accepted
    assert not third.accepted
    assert third.reason == "rate limit 2/min exceeded for tool 'get_current_time'"
    record = ToolCallRecord.unscoped.get()
    assert (record.call_id, record.status) == ("c3", "rejected")
    assert [m["headers"]["id"] for m in queue()] == [first.pending.task_id, second.pending.task_id]


def test_a_stale_allowlist_goes_to_the_thread_uncounted(queue, alice_agent, alice_session):
    entry = allow(alice_agent, "get_current_time", rate_limit="1/min")
    with tenant_scope(alice_agent.tenant_id):
        allowlist = tool_allowlist_for_agent(agent=alice_agent)
        agent_tool_update(agent_tool=entry, timeout_seconds=3)  # the copy is now stale
    stale = on_loop(alice_agent, alice_session, "get_current_time", UTC, allowlist=allowlist)
    assert stale is None
    assert queue() == []
    with tenant_scope(alice_agent.tenant_id):  # the thread's path: reloads, counts once
        admission = tool_call_admit(
            session=alice_session, agent=alice_agent, call_id="c1", name="get_current_time",
            args=UTC, allowlist=allowlist,
        )  # fmt: skip
    assert admission.accepted  # 1/min: the loop's attempt was not counted
    assert admission.timeout == 3


@pytest.mark.parametrize(
    ("name", "args"),
    [("send_email", {"to": "x@example.com"}), ("get_current_time", {"timezone": 5})],
)
def test_refusals_go_to_the_thread_uncounted_and_unpublished(
    queue, alice_agent, alice_session, name, args
):
    allow(alice_agent, "get_current_time", rate_limit="1/min")
    assert on_loop(alice_agent, alice_session, name, args) is None
    assert queue() == []
    assert on_loop(alice_agent, alice_session, "get_current_time", UTC, "c2").accepted


def test_without_celery_on_the_cache_redis_it_stands_aside(
    queue, settings, alice_agent, alice_session
):
    allow(alice_agent, "get_current_time")
    settings.TOOL_EXECUTION = "inprocess"
    assert on_loop(alice_agent, alice_session, "get_current_time", UTC) is None
    settings.TOOL_EXECUTION = "celery"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert on_loop(alice_agent, alice_session, "get_current_time", UTC) is None
    assert queue() == []


def test_a_redis_failure_goes_to_the_thread(queue, alice_agent, alice_session):
    allow(alice_agent, "get_current_time")
    broken = mock.AsyncMock(side_effect=ConnectionError("redis down"))
    with mock.patch("tools.services.rate_limit_consume_and_push", broken):
        assert on_loop(alice_agent, alice_session, "get_current_time", UTC) is None
    broken.assert_awaited_once()


def test_a_repeated_call_is_neither_counted_nor_published_again(queue, alice_agent, alice_session):
    allow(alice_agent, "get_current_time", rate_limit="1/min")
    first = on_loop(alice_agent, alice_session, "get_current_time", UTC)
    repeat = on_loop(alice_agent, alice_session, "get_current_time", UTC)
    assert first.accepted
    assert repeat.accepted  # not over 1/min: the same call
    assert (repeat.record, repeat.pending) == (None, None)  # waits for the first one's row
    assert [m["headers"]["id"] for m in queue()] == [first.pending.task_id]
    assert not ToolCallRecord.unscoped.exists()
