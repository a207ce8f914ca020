"""Bench-only loopback: every audio chunk comes straight back, stamped with its receipt time.

With `EmulatorConfig.echo_frames` on, each `realtimeInput` audio blob is answered at once
with one `serverContent.modelTurn` audio part carrying the same bytes (labelled 24 kHz: the
content is a marker, not speech), except that bytes `STAMP_OFFSET` to `STAMP_OFFSET + 8`
are overwritten with the time the emulator received the frame, as little-endian
`CLOCK_MONOTONIC` nanoseconds (`time.monotonic_ns()`). That clock is shared by every
process on the machine, so a load generator that wrote its own send time into the first
bytes can split a round trip into client->emulator and emulator->client.
"""

from __future__ import annotations

import struct

# Bytes 0-15 belong to the sender (e.g. a sequence number and a send time).
STAMP_OFFSET = 16
_STAMP = struct.Struct("<Q")
STAMP_END = STAMP_OFFSET + _STAMP.size


def stamp(pcm: bytes, received_ns: int) -> bytes:
    """`pcm` with the receipt time written in; shorter frames come back unchanged."""
    if len(pcm) < STAMP_END:
        return pcm
    return pcm[:STAMP_OFFSET] + _STAMP.pack(received_ns) + pcm[STAMP_END:]


def read_stamp(pcm: bytes) -> int | None:
    """The receipt time an echoed frame carries, or None if it is too short."""
    if len(pcm) < STAMP_END:
        return None
    value: int = _STAMP.unpack_from(pcm, STAMP_OFFSET)[0]
    return value
