"""The tool task's message, pushed straight to Redis: the same as ``apply_async`` pushes."""

from __future__ import annotations

import base64
import json
import uuid
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest

from conftest import require_redis
from tools import task_publish
from tools.task_publish import publish_task, task_message
from tools.tasks import tool_call_execute_task
from voice_platform.celery import app

KWARGS = {"tenant_id": 7, "call": {"call_id": "c1", "arguments": {"a": [1, "é"]}, "n": 2.5}}


def decoded(raw: bytes) -> dict[str, Any]:
    message = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


@pytest.fixture
def redis_broker() -> Any:
    import redis

    url = require_redis()
    assert app.conf.broker_url == url  # the settings' broker is this Redis
    return redis.Redis.from_url(url)


def test_the_message_is_what_apply_async_pushes(redis_broker) -> None:
    queue = f"test-publish-{uuid.uuid4().hex[:8]}"
    task_id = str(uuid.uuid4())
    shown = {"argsrepr": "()", "kwargsrepr": "<call c1>"}
    tool_call_execute_task.apply_async(kwargs=KWARGS, task_id=task_id, queue=queue, **shown)
    (pushed,) = redis_broker.lrange(queue, 0, -1)
    redis_broker.delete(queue)
    theirs = decoded(pushed)
    ours = decoded(
        task_message(tool_call_execute_task, task_id=task_id, kwargs=KWARGS, queue=queue,
                     kwargsrepr="<call c1>")
    )  # fmt: skip
    # Unique per message: a fresh delivery tag each.
    assert uuid.UUID(ours["properties"].pop("delivery_tag"))
    theirs["properties"].pop("delivery_tag")
    assert ours == theirs
    assert ours["headers"]["timelimit"] == [
        tool_call_execute_task.time_limit,
        tool_call_execute_task.soft_time_limit,
    ]


def test_publish_pushes_one_message_onto_the_queue(redis_broker) -> None:
    queue = f"test-publish-{uuid.uuid4().hex[:8]}"
    with mock.patch.object(tool_call_execute_task, "apply_async") as apply_async:
        publish_task(tool_call_execute_task, task_id="t-1", kwargs=KWARGS, queue=queue,
                     kwargsrepr="<call c1>")  # fmt: skip
    apply_async.assert_not_called()
    (pushed,) = redis_broker.lrange(queue, 0, -1)
    redis_broker.delete(queue)
    message = decoded(pushed)
    assert message["headers"]["id"] == "t-1"
    assert message["body"][1] == KWARGS


DEFAULTS: dict[str, Any] = {
    "broker_url": "redis://127.0.0.1:6379/0",
    "broker_transport_options": {},
    "broker_transport": None,
    "broker_use_ssl": None,
    "task_serializer": "json",
    "task_compression": None,
    "task_protocol": 2,
}


@pytest.mark.parametrize(
    ("change", "mirrored"),
    [
        ({}, True),
        ({"broker_url": "rediss://cache.example.com:6380/1"}, True),
        ({"broker_url": "memory://"}, False),
        ({"broker_url": "amqp://guest@localhost//"}, False),
        ({"broker_transport_options": {"global_keyprefix": "x"}}, False),
        ({"broker_transport": "my.transport:Transport"}, False),
        ({"broker_use_ssl": {"ssl_cert_reqs": "required"}}, False),
        ({"broker_url": "redis://a:6379/0;redis://b:6379/0"}, False),
        ({"task_serializer": "pickle"}, False),
        ({"task_compression": "gzip"}, False),
        ({"task_protocol": 1}, False),
    ],
)
def test_only_the_broker_setup_it_mirrors_gets_the_direct_push(change, mirrored) -> None:
    assert task_publish.broker_mirrored(SimpleNamespace(**{**DEFAULTS, **change})) is mirrored


def test_any_other_setup_gets_apply_async() -> None:
    with (
        mock.patch.object(task_publish, "broker_mirrored", return_value=False),
        mock.patch.object(tool_call_execute_task, "apply_async") as apply_async,
        mock.patch.object(task_publish, "_redis_client") as client,
    ):
        publish_task(tool_call_execute_task, task_id="t-1", kwargs=KWARGS, queue="q",
                     kwargsrepr="<call c1>")  # fmt: skip
    client.assert_not_called()
    apply_async.assert_called_once_with(
        kwargs=KWARGS, task_id="t-1", queue="q", argsrepr="()", kwargsrepr="<call c1>"
    )
