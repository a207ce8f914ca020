"""channels-redis with a one-round-trip ``send``.

channels-redis 4.3 sends a message in four sequential Redis round trips (expire old
messages, count, add, set the expiry). Wake-ups for tool results sit on the tool call's
critical path, so this sends the same four commands in one pipeline and takes the message
back out if the channel turned out to be full: the same keys, format and capacity rule,
so either implementation can receive what the other sent.

One difference: a full channel is noticed after the add, so a receiver may take the
message in the instant before it is taken back out, and the sender still gets
``ChannelFull``. Everything sent this way (wake-ups, session control) is idempotent.
"""

from __future__ import annotations

import time
from typing import Any

from channels.exceptions import ChannelFull
from channels_redis.core import RedisChannelLayer


class PipelinedRedisChannelLayer(RedisChannelLayer):  # type: ignore[misc]
    async def send(self, channel: str, message: dict[str, Any]) -> None:
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
        connection = self.connection(index)
        payload = self.serialize(message)
        now = time.time()
        pipe = connection.pipeline(transaction=False)
        pipe.zremrangebyscore(channel_key, min=0, max=int(now) - int(self.expiry))
        pipe.zcount(channel_key, "-inf", "+inf")
        pipe.zadd(channel_key, {payload: now})
        pipe.expire(channel_key, int(self.expiry))
        _, count_before, _, _ = await pipe.execute()
        if count_before >= self.get_capacity(channel):
            await connection.zrem(channel_key, payload)
            raise ChannelFull()
