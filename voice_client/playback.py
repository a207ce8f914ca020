"""When a client reports ``playback.started``: once per reply, when its first audio plays.

The server times voice-to-voice latency as the user hears it from this report
(docs/protocol.md, "Playback reports"). A reply begins with the first model audio after
``session.started`` (a new connection), ``turn_complete`` or ``interrupted``; later audio
of the same reply, and a chunk that resumes after an underrun, send nothing.

Feed it in the order the *player* handles things, not the order frames arrive: a player
with a buffer starts playing a reply after it may already have received the reply's
``turn_complete``.

    reporter = PlaybackReporter()
    for item in what_the_player_handles:
        if reporter.take(item):          # a player that plays audio as it arrives
            await session.playback_started()

A player with its own buffer calls ``reply_ended()`` when it handles ``turn_complete`` or
``interrupted``, and ``started()`` when the speaker actually begins a chunk.
"""

from __future__ import annotations

from voice_client.protocol import Event

# Events after which the next audio belongs to a new reply.
REPLY_BOUNDARIES = frozenset({"session.started", "turn_complete", "interrupted"})


class PlaybackReporter:
    """The once-per-reply rule of ``playback.started``; pure, no I/O."""

    def __init__(self) -> None:
        self._reported = False
        self.reports = 0  # reports due so far (one per reply that played)

    def reply_ended(self) -> None:
        """The reply is over (or cut off, or the connection is new): the next audio that
        plays starts a new reply."""
        self._reported = False

    def started(self) -> bool:
        """Audio started playing; True when it is the reply's first (report it now)."""
        if self._reported:
            return False
        self._reported = True
        self.reports += 1
        return True

    def take(self, item: object) -> bool:
        """One received item (an ``Event``, audio ``bytes`` or anything else) for a player
        that plays audio the moment it arrives; True when a report is due now."""
        if isinstance(item, bytes):
            return bool(item) and self.started()
        if isinstance(item, Event) and item.type in REPLY_BOUNDARIES:
            self.reply_ended()
        return False
