from __future__ import annotations

from sessions.uplink import AUDIO_BYTES_PER_SECOND, ItemKind, Uplink, UplinkItem

FRAME = b"\x00\x01" * 1600  # 100 ms


def audio() -> UplinkItem:
    return UplinkItem(ItemKind.AUDIO, FRAME)


async def send_all(uplink: Uplink) -> list[UplinkItem]:
    sent = []
    while uplink.replay or uplink.pending:
        item = await uplink.next()
        uplink.sent(item)
        sent.append(item)
    return sent


async def test_uplink_pending_keeps_newest_two_seconds():
    uplink = Uplink()
    items = [audio() for _ in range(30)]
    for item in items:
        uplink.put(item)
    assert list(uplink.pending) == items[10:]
    assert uplink.dropped_audio_frames == 10


async def test_uplink_replay_survives_new_input_after_reconnect():
    uplink = Uplink()
    turn = [audio() for _ in range(100)]  # 10 s in flight when the upstream died
    for item in turn:
        uplink.put(item)
        uplink.sent(await uplink.next())
    uplink.replay_unacknowledged()
    newer = audio()
    uplink.put(newer)  # the client keeps talking while the replay goes out
    sent = await send_all(uplink)
    assert sent == [*turn, newer]
    assert uplink.dropped_audio_frames == 0


async def test_uplink_handle_acknowledges_only_turns_it_covers():
    uplink = Uplink()
    first, second = audio(), audio()
    for item in (first,):
        uplink.put(item)
        uplink.sent(await uplink.next())
    uplink.turn_complete()  # the model answered "first"
    uplink.put(second)
    uplink.sent(await uplink.next())  # sent before the handle for that turn arrived
    uplink.handle_saved()
    uplink.replay_unacknowledged()
    assert list(uplink.replay) == [second]


async def test_uplink_bounds_unacknowledged_audio():
    uplink = Uplink(max_unacknowledged_audio=AUDIO_BYTES_PER_SECOND)
    for _ in range(30):
        uplink.put(audio())
        uplink.sent(await uplink.next())
    assert len(uplink.unacknowledged) == 10


async def test_uplink_items_sent_directly_while_idle_are_replayed_in_order():
    uplink = Uplink()
    direct = [audio(), audio()]
    for item in direct:
        assert uplink.idle  # nothing queued: the bridge writes these straight up
        uplink.sent(item)
    queued = audio()
    uplink.put(queued)
    assert not uplink.idle  # now a new frame must queue behind it
    assert await send_all(uplink) == [queued]
    uplink.replay_unacknowledged()  # the connection dropped before a handle covered them
    assert await send_all(uplink) == [*direct, queued]
