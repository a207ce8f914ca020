"""Control messages to the consumer that holds a session, over the channel layer.

Only low-rate control travels this way (never audio): "end this session", "you were
superseded", and (tools) "a result is ready". The database stays the source of truth;
a lost message only delays what the database already says.
"""

from __future__ import annotations

from channels.layers import get_channel_layer

from voice_platform.channel_send import channel_send_blocking


async def notify_superseded(channel_name: str) -> None:
    layer = get_channel_layer()
    if layer is not None and channel_name:
        await layer.send(channel_name, {"type": "session.superseded"})


def notify_end(channel_name: str, reason: str) -> None:
    channel_send_blocking(channel_name, {"type": "session.end", "reason": reason})
