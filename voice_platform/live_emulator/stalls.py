"""Reply turns that stall (googleapis/python-genai#2117): "turnComplete arrives with empty
content. No error events fire, the WebSocket stays open."

- EMPTY: `turnComplete` (with usage, response 0) and nothing else: no model content, no
  output transcription, no `generationComplete`. The user's turn stays in the history
  without a reply, and a resumption handle is issued as after any turn.
- SILENT: no answer at all. The connection stays healthy (pongs, later turns).

Deterministic per connection with `Faults.empty_turns` / `silent_turns` (used first, in
that order), else drawn with `EmulatorConfig.empty_turn_rate` / `silent_turn_rate`.
Only turns that answer the user stall, not NON_BLOCKING result announcements.
"""

from __future__ import annotations

import enum
import random

from voice_platform.live_emulator.config import EmulatorConfig
from voice_platform.live_emulator.faults import Faults


class Stall(enum.Enum):
    EMPTY = "empty"
    SILENT = "silent"


class StallPlan:
    def __init__(self, *, config: EmulatorConfig, faults: Faults, rng: random.Random) -> None:
        self.empty_left = faults.empty_turns
        self.silent_left = faults.silent_turns
        self.empty_rate = config.empty_turn_rate
        self.silent_rate = config.silent_turn_rate
        self.rng = rng

    def next_turn(self) -> Stall | None:
        if self.empty_left > 0:
            self.empty_left -= 1
            return Stall.EMPTY
        if self.silent_left > 0:
            self.silent_left -= 1
            return Stall.SILENT
        if self.empty_rate <= 0 and self.silent_rate <= 0:
            return None
        draw = self.rng.random()
        if draw < self.silent_rate:
            return Stall.SILENT
        if draw < self.silent_rate + self.empty_rate:
            return Stall.EMPTY
        return None
