"""channels-redis with a one-round-trip ``send``.

channels-redis 4.3 sends a message in four sequential Redis round trips (expire old
messages, count, add, set the expiry). Wake-ups for tool results sit on the tool call's
critical path, so this sends the same four commands in one pipeline and takes the message
back out if the channel turned out to be full: the same keys, format and capacity rule,
so either implementation can receive what the other sent.

One difference: a full channel is noticed after the add, so a receiver may take the
message in the instant before it is taken back out, and the sender still gets
``ChannelFull``. Everything sent this way (wake-ups, session control) is idempotent.

``receive`` outlives a Redis outage. Channels' consumer runs the channel layer's receive
beside the client's socket and dies with it, so upstream channels-redis turns a Redis
restart into a 1011 on every live WebSocket, although audio and text never needed Redis.
Here a receive that loses Redis waits and tries again (full-jitter backoff, one warning per
outage); control messages sent meanwhile were refused to their senders, who fall back on
the database (see docs/security.md, "Redis outage").
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from typing import Any

import redis
from channels.exceptions import ChannelFull
from channels_redis.core import RedisChannelLayer

log = logging.getLogger(__name__)
# How long a receive waits before it asks a Redis that went away again (full jitter).
RECEIVE_RETRY_FIRST = 0.5
RECEIVE_RETRY_CAP = 5.0
# What a lost Redis raises in redis-py (asyncio and sync share the classes) and below it.
REDIS_DOWN: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)


class PipelinedRedisChannelLayer(RedisChannelLayer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_clients: dict[int, Any] = {}
        self._sync_lock = threading.Lock()

    async def receive(self, channel: str) -> dict[str, Any]:
        failures = 0
        while True:
            try:
                message: dict[str, Any] = await super().receive(channel)
            except REDIS_DOWN as exc:
                if failures == 0:
                    log.warning("channel layer: Redis unreachable, retrying receive: %s", exc)
                failures += 1
                cap = min(RECEIVE_RETRY_CAP, RECEIVE_RETRY_FIRST * 2 ** min(failures, 8))
                await asyncio.sleep(random.uniform(RECEIVE_RETRY_FIRST / 2, cap))  # noqa: S311
                continue
            if failures:
                log.info("channel layer: Redis reachable again after %d retries", failures)
            return message

    def _prepare_send(self, channel: str, message: dict[str, Any]) -> tuple[str, int, bytes]:
        """(the channel's key, the host index, the payload), as channels-redis makes them."""
        assert isinstance(message, dict), "message is not a dict"  # noqa: S101 (as upstream)
        assert self.require_valid_channel_name(channel), "Channel name not valid"  # noqa: S101
        assert "__asgi_channel__" not in message  # noqa: S101
        channel_non_local_name = channel
        if "!" in channel:
            message = dict(message.items())
            message["__asgi_channel__"] = channel
            channel_non_local_name = self.non_local_name(channel)
        channel_key = self.prefix + channel_non_local_name
        if "!" in channel:
            index = self.consistent_hash(channel)
        else:
            index = next(self._send_index_generator)
        return channel_key, index, self.serialize(message)

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        channel_key, index, payload = self._prepare_send(channel, message)
        connection = self.connection(index)
        pipe = self._add_commands(connection.pipeline(transaction=False), channel_key, payload)
        _, count_before, _, _ = await pipe.execute()
        if count_before >= self.get_capacity(channel):
            await connection.zrem(channel_key, payload)
            raise ChannelFull()

    def _add_commands(self, pipe: Any, channel_key: str, payload: bytes) -> Any:
        """channels-redis's four send commands (expire old, count, add, set the expiry), on
        a pipeline of either kind."""
        now = time.time()
        pipe.zremrangebyscore(channel_key, min=0, max=int(now) - int(self.expiry))
        pipe.zcount(channel_key, "-inf", "+inf")
        pipe.zadd(channel_key, {payload: now})
        pipe.expire(channel_key, int(self.expiry))
        return pipe

    def can_send_blocking(self) -> bool:
        """Whether ``send_blocking`` can be used (every host given by address or host/port;
        a Sentinel host is served by ``send`` only)."""
        return all("master_name" not in host for host in self.hosts)

    def send_blocking(self, channel: str, message: dict[str, Any]) -> None:
        """``send`` for synchronous code (Celery workers, tool threads): the same pipeline
        on a synchronous connection, in the calling thread. Handing the send to an event
        loop in another thread and waiting for it cost two thread wake-ups per message, on
        the tool call's critical path."""
        channel_key, index, payload = self._prepare_send(channel, message)
        client = self._sync_client(index)
        pipe = self._add_commands(client.pipeline(transaction=False), channel_key, payload)
        _, count_before, _, _ = pipe.execute()
        if count_before >= self.get_capacity(channel):
            client.zrem(channel_key, payload)
            raise ChannelFull()

    def _sync_client(self, index: int) -> Any:
        client = self._sync_clients.get(index)
        if client is None:
            with self._sync_lock:
                client = self._sync_clients.get(index)
                if client is None:
                    host = dict(self.hosts[index])
                    address = host.pop("address", None)
                    pool = (
                        redis.ConnectionPool.from_url(address, **host)
                        if address is not None
                        else redis.ConnectionPool(**host)
                    )
                    client = self._sync_clients[index] = redis.Redis(connection_pool=pool)
        return client
