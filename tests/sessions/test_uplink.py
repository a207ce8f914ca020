from __future__ import annotations

from sessions.uplink import AUDIO_BYTES_PER_SECOND, ItemKind, Uplink, UplinkItem

FRAME = b"\x00\x10" * 1600  # 100 ms, loud (4096): speech, which a replay keeps


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


def text(words: str) -> UplinkItem:
    return UplinkItem(ItemKind.TEXT, (words, True))


async def test_uplink_turn_position_counts_model_turns_and_rewinds_on_replay():
    uplink = Uplink(acked_turns=5)
    uplink.put(text("first"))
    await send_all(uplink)
    assert uplink.turn_position == 5
    uplink.turn_complete()
    uplink.handle_saved()  # the handle covers the first turn
    assert uplink.turn_position == 6
    uplink.put(text("second"))
    await send_all(uplink)
    uplink.turn_complete()  # completed, but no handle covers it yet
    uplink.put(text("third"))
    await send_all(uplink)
    assert uplink.turn_position == 7
    # A reconnect resumes from the handle: the second and third turns are asked again and
    # their calls come again at the positions they had.
    uplink.replay_unacknowledged()
    assert uplink.turn_position == 6
    replayed = await send_all(uplink)
    assert [item.payload[0] for item in replayed] == ["second", "third"]
    uplink.turn_complete()
    assert uplink.turn_position == 7


async def test_uplink_a_replayed_turn_brings_its_own_position():
    uplink = Uplink(acked_turns=9)  # past every earlier tool call's position
    uplink.put(UplinkItem(ItemKind.TEXT, ("kept for replay", True), position=4))
    await send_all(uplink)
    assert uplink.turn_position == 4  # its calls take the keys they had
    uplink.turn_complete()
    assert uplink.turn_position == 5


async def test_uplink_current_turn_is_what_was_sent_since_the_last_turn_complete():
    uplink = Uplink()
    uplink.put(text("earlier"))
    await send_all(uplink)
    uplink.turn_complete()  # no handle yet: "earlier" stays unacknowledged
    uplink.put(audio())
    uplink.put(text("now"))
    await send_all(uplink)
    assert [item.kind for item in uplink.current_turn()] == [ItemKind.AUDIO, ItemKind.TEXT]
    assert uplink.current_turn()[-1].payload[0] == "now"
    assert len(uplink.unacknowledged) == 3
