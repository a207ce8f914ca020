"""Named sets of knobs. `default` is the plain emulator; `realistic` is as hard as Google.

Each realistic value comes from a public report (docs/emulator.md, "Realistic profile");
where a report gives no number, the choice is explained next to it.
"""

from __future__ import annotations

from typing import Any

from voice_platform.live_emulator.config import EmulatorConfig

PROFILES = ("default", "realistic")

REALISTIC: dict[str, Any] = {
    "profile": "realistic",
    # Pongs measured at 8-30 s (aicc2025/sip-to-ai#14).
    "pong_delay": (8.0, 30.0),
    # "Gemini rejects a resume with 1011 while an earlier socket ... is still open" (same).
    "refuse_resume_while_open": True,
    # No public figure: about one missed keepalive round on the service side.
    "dead_peer_timeout": 10.0,
    # goAway "roughly 50-60 s before the end" (kizuna-ai-lab/sokuji#179 shows 50 s).
    "go_away_notice_range": (50.0, 60.0),
    # python-genai#2117: ~50 % of deployed calls had at least one empty turn. At 10 % per
    # turn, a 7-turn call has one with probability 1 - 0.9**7 = 52 %.
    "empty_turn_rate": 0.1,
    # Hangs with no answer at all are reported (python-genai#803) but not counted: rare.
    "silent_turn_rate": 0.02,
    # "Intermittently" (livekit/agents#4545), no rate published: 1 call in 50.
    "not_implemented_rate": 0.02,
    # Input transcripts stream in pieces and lag (gemini-live-api-examples#26, #45).
    "input_transcript_streaming": True,
    "input_transcript_lag": 0.3,
    # "Cumulative token totals on multiple messages per turn" (tau2-bench#454).
    "usage_updates_per_turn": 3,
    # Native-audio models usually say something before calling a function.
    "tool_preamble": True,
    # A plausible one-way path to Google from a cloud region.
    "latency": 0.04,
    "jitter": 0.02,
    # The service listens in real time; a second of read-ahead is tolerated.
    "realtime_audio_buffer": 1.0,
}


def realistic(**overrides: Any) -> EmulatorConfig:
    """The realistic profile; `overrides` are any `EmulatorConfig` fields."""
    return EmulatorConfig(**{**REALISTIC, **overrides})


def config_for(profile: str, **overrides: Any) -> EmulatorConfig:
    """`EmulatorConfig` for a profile name (`default` or `realistic`)."""
    if profile == "default":
        return EmulatorConfig(**overrides)
    if profile == "realistic":
        return realistic(**overrides)
    raise ValueError(f"unknown profile {profile!r} (expected one of {', '.join(PROFILES)})")
