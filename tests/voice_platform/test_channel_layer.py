"""The one-round-trip channel layer against real Redis, read back by channels-redis itself."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels_redis.core import RedisChannelLayer

from conftest import require_redis
from voice_platform.channel_layer import PipelinedRedisChannelLayer


def layers(capacity: int = 100) -> tuple[PipelinedRedisChannelLayer, RedisChannelLayer]:
    url = require_redis()
    prefix = f"test-layer-{uuid.uuid4().hex[:8]}"  # nothing shared with other runs
    config = {"hosts": [url], "prefix": prefix, "capacity": capacity}
    return PipelinedRedisChannelLayer(**config), RedisChannelLayer(**config)


async def test_pipelined_send_is_received_by_channels_redis() -> None:
    ours, upstream = layers()
    specific = await upstream.new_channel()  # a process-local "name!suffix" channel
    await ours.send(specific, {"type": "tool.result", "record_id": 7, "response": {"a": [1]}})
    await ours.send("general-channel", {"type": "hello"})
    assert await upstream.receive(specific) == {
        "type": "tool.result", "record_id": 7, "response": {"a": [1]},
    }  # fmt: skip
    assert await upstream.receive("general-channel") == {"type": "hello"}
    await ours.flush()
    await upstream.flush()


async def test_pipelined_send_to_a_full_channel_raises_and_leaves_nothing() -> None:
    ours, upstream = layers(capacity=2)
    await ours.send("full-channel", {"type": "m", "n": 1})
    await ours.send("full-channel", {"type": "m", "n": 2})
    with pytest.raises(ChannelFull):
        await ours.send("full-channel", {"type": "m", "n": 3})
    assert await upstream.receive("full-channel") == {"type": "m", "n": 1}
    assert await upstream.receive("full-channel") == {"type": "m", "n": 2}
    # The refused message was taken back out: the channel is empty and has room again.
    await ours.send("full-channel", {"type": "m", "n": 4})
    assert await upstream.receive("full-channel") == {"type": "m", "n": 4}
    await ours.flush()
    await upstream.flush()


async def test_blocking_send_is_received_by_channels_redis() -> None:
    ours, upstream = layers()
    specific = await upstream.new_channel()
    assert ours.can_send_blocking()
    ours.send_blocking(specific, {"type": "tool.result", "call_id": "c1", "response": {"a": 1}})
    ours.send_blocking("general-channel", {"type": "hello"})
    assert await upstream.receive(specific) == {
        "type": "tool.result", "call_id": "c1", "response": {"a": 1},
    }  # fmt: skip
    assert await upstream.receive("general-channel") == {"type": "hello"}
    await upstream.flush()


async def test_blocking_send_to_a_full_channel_raises_and_leaves_nothing() -> None:
    ours, upstream = layers(capacity=1)
    ours.send_blocking("full-channel", {"type": "m", "n": 1})
    with pytest.raises(ChannelFull):
        ours.send_blocking("full-channel", {"type": "m", "n": 2})
    assert await upstream.receive("full-channel") == {"type": "m", "n": 1}
    ours.send_blocking("full-channel", {"type": "m", "n": 3})
    assert await upstream.receive("full-channel") == {"type": "m", "n": 3}
    await upstream.flush()


def test_channel_send_blocking_uses_the_blocking_send(settings, monkeypatch) -> None:
    from channels.layers import channel_layers

    from voice_platform import channel_send

    url = require_redis()
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "voice_platform.channel_layer.PipelinedRedisChannelLayer",
            "CONFIG": {"hosts": [url], "prefix": f"test-send-{uuid.uuid4().hex[:8]}"},
        }
    }
    channel_layers.backends.clear()
    try:
        layer = channel_send.get_channel_layer()
        monkeypatch.setattr(channel_send, "_sender_loop", None)  # must not be needed
        channel_send.channel_send_blocking("wake-channel", {"type": "tool.result"})
        assert async_to_sync(layer.receive)("wake-channel") == {"type": "tool.result"}
        async_to_sync(layer.flush)()
    finally:
        channel_layers.backends.clear()
