"""Publishing the tool-call task: one LPUSH on the Redis broker.

``apply_async`` spends about 0.45 ms of Python per call on the tool call's critical path
(routing, option merging, and a new redis-py client per publish inside kombu, which
alone builds ~170 response callbacks). The bridge publishes exactly one kind of task, so
this builds that task's message once per call: the task protocol (headers, body) by
Celery's own ``as_task_v2``, the Redis envelope as kombu's virtual channel writes it
(``prepare_message`` + ``_inplace_augment_message``, JSON, base64 body), pushed to the
queue's list the way kombu's ``_put`` does for priority 0.

tests/tools/test_task_publish.py compares the message with what ``apply_async`` pushes
for the same call, so a Celery or kombu upgrade that changes either format fails there;
the real-worker tests consume it. Any broker setup this does not mirror (not Redis,
transport options, another serializer, compression) uses ``apply_async``. Not sent:
Celery's ``before/after_task_publish`` signals (nothing here listens to them).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import uuid
from typing import Any

from celery import Task
from celery.utils.nodenames import anon_nodename
from redis.backoff import NoBackoff
from redis.retry import Retry

_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def publish_task(
    task: Task[Any, Any],
    *,
    task_id: str,
    kwargs: dict[str, Any],
    queue: str,
    kwargsrepr: str,
) -> None:
    """Send ``task`` with ``kwargs`` to ``queue`` (what ``apply_async`` would send)."""
    app = task.app
    client = _redis_client(app.conf.broker_url) if broker_mirrored(app.conf) else None
    if client is None:
        # What Celery shows of the task in logs, events and monitors. (Options missing
        # from Celery's type stubs.)
        shown: dict[str, Any] = {"argsrepr": "()", "kwargsrepr": kwargsrepr}
        task.apply_async(kwargs=kwargs, task_id=task_id, queue=queue, **shown)
        return
    client.lpush(queue, task_message(task, task_id=task_id, kwargs=kwargs, queue=queue,
                                     kwargsrepr=kwargsrepr))  # fmt: skip


def task_message(
    task: Task[Any, Any], *, task_id: str, kwargs: dict[str, Any], queue: str, kwargsrepr: str
) -> bytes:
    """The message kombu's Redis transport would push for ``task.apply_async``."""
    app = task.app
    headers, properties, body, _ = app.amqp.as_task_v2(
        task_id,
        task.name,
        args=(),
        kwargs=kwargs,
        argsrepr="()",
        kwargsrepr=kwargsrepr,
        time_limit=task.time_limit,
        soft_time_limit=task.soft_time_limit,
        reply_to=app.thread_oid,
        ignore_result=task.ignore_result,
        origin=_origin(os.getpid()),
    )
    properties.update(
        argsrepr="()",  # Celery copies its extra options into the properties as well
        kwargsrepr=kwargsrepr,
        delivery_mode=app.conf.task_default_delivery_mode,
        delivery_info={"exchange": "", "routing_key": queue},  # the anonymous exchange
        priority=0,
        body_encoding="base64",
        delivery_tag=str(uuid.uuid4()),
    )
    payload = json.dumps(body).encode()
    return json.dumps(
        {
            "body": base64.b64encode(payload).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": properties,
        }
    ).encode()


def broker_mirrored(conf: Any) -> bool:
    """Whether the broker is set up the way ``task_message`` mirrors (Celery's ``conf``)."""
    return (
        str(conf.broker_url).startswith(("redis://", "rediss://"))
        and ";" not in str(conf.broker_url)  # a failover list: kombu's to walk, not ours
        and not conf.broker_use_ssl  # TLS options redis-py's from_url would not see
        and not conf.broker_transport_options
        and not conf.broker_transport
        and conf.task_serializer == "json"
        and not conf.task_compression
        and conf.task_protocol == 2
    )


@functools.cache
def _redis_client(url: str) -> Any:
    import redis

    # No retry: an LPUSH retried after a lost reply would queue the task twice. A failure
    # fails the call ("could not queue the call"), and the model is told.
    return redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=5, retry=Retry(NoBackoff(), 0)
    )


@functools.cache
def _origin(pid: int) -> str:  # per process: the name holds the pid
    return str(anon_nodename())
