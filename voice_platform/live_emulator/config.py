"""Every knob of the emulator in one dataclass, so the CLI, tests and bench share defaults."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voice_platform.live_emulator.faults import Faults

# Model names the real Gemini API serves for Live (protocol doc section 7). Older names
# answer 1008 "not found" there, so they are deliberately absent.
DEFAULT_MODELS: tuple[str, ...] = (
    "gemini-3.1-flash-live-preview",
    "gemini-2.5-flash-native-audio-preview-12-2025",
    "gemini-2.5-flash-native-audio-preview-09-2025",
)

DEFAULT_CERT_DIR = Path("var/emulator-certs")


@dataclass
class EmulatorConfig:
    """Server-wide settings. Times are seconds unless the name says otherwise."""

    host: str = "127.0.0.1"
    port: int = 8765
    cert_dir: Path = DEFAULT_CERT_DIR
    # Names the certificate covers besides 127.0.0.1 and localhost (certs.ensure_cert).
    cert_names: tuple[str, ...] = ()
    # Empty means "any non-empty key is accepted".
    api_keys: frozenset[str] = frozenset()
    models: tuple[str, ...] = DEFAULT_MODELS

    # Speed of streamed replies: 1.0 is real time, 10.0 ten times faster, 0 no waiting.
    pace: float = 1.0
    # Size of one streamed audio chunk of a reply (24 kHz PCM16).
    chunk_ms: int = 40
    # A text reply is streamed in this many parts.
    text_parts: int = 3
    # Audio length of one character of a synthesised (text-turn) spoken reply.
    speech_ms_per_char: int = 60

    # Energy VAD on 16 kHz input. RMS threshold on the int16 scale (about -36 dBFS).
    vad_threshold: float = 500.0
    vad_start_ms: int = 40
    vad_silence_ms: int = 500

    # Connection lifetime: goAway `go_away_notice` seconds before the close.
    connection_lifetime: float = 600.0
    go_away_notice: float = 60.0
    # Close code and reason after the lifetime (assumed: reports show 1011 at ~10 min).
    lifetime_close_code: int = 1011
    lifetime_close_reason: str = "Deadline expired before operation could complete."
    # Session limits without context-window compression (audio only / with video).
    session_limit_audio: float = 900.0
    session_limit_video: float = 120.0
    # Resumption handles stay valid this long after they are issued or the session ends.
    handle_ttl: float = 7200.0
    # How long the server waits for the `setup` frame.
    setup_timeout: float = 30.0

    context_window_tokens: int = 131_072
    audio_tokens_per_second: int = 32

    # Ephemeral token defaults (protocol doc section 6).
    token_expire: float = 1800.0
    token_new_session_window: float = 60.0
    token_max_ahead: float = 20 * 3600.0

    # permessage-deflate like the real service; off makes the server cheaper.
    compression: bool = True
    # Recording of what each session received (see recorder.py).
    record: bool = True
    record_max_messages: int = 10_000
    # Bench-only loopback (echo.py): every audio chunk is answered at once with the same
    # bytes, stamped with its receipt time, instead of going through the VAD and turns.
    echo_frames: bool = False

    # Faults applied to every connection unless a connection brings its own.
    faults: Faults = field(default_factory=Faults)
    # Wall clock for tokens and handles; tests swap it to jump ahead in time.
    clock: Callable[[], float] = time.time

    # --- realistic profile (profiles.py, docs/emulator.md "Realistic profile") ----------
    # Every default below keeps the plain emulator; `EmulatorConfig.realistic()` sets them.
    profile: str = "default"
    # Service-side durations are divided by this (lifetimes, goAway notices, session
    # limits, handle TTL, pong delays, dead-peer timeout, fault delays); audio, VAD,
    # network latency, setup timeout and token times are not.
    time_scale: float = 1.0
    random_seed: int | None = None
    # Each client ping is answered after a uniform delay in this range (seconds).
    pong_delay: tuple[float, float] = (0.0, 0.0)
    # Refuse (1011) a resume while a connection of the same session still counts as open.
    refuse_resume_while_open: bool = False
    # How long a connection whose client vanished (TCP abort, black hole) still counts as
    # open; 0 = the server notices an abort at once and never notices a black hole.
    dead_peer_timeout: float = 0.0
    # goAway notice drawn per connection in this range (replaces `go_away_notice`).
    go_away_notice_range: tuple[float, float] | None = None
    # Probability that a reply turn ends with an empty turnComplete / is never answered.
    empty_turn_rate: float = 0.0
    silent_turn_rate: float = 0.0
    # Setup refusals: over quota (1011), an expired key (1007); 1008 "not implemented"
    # replaces a function call on native-audio models with this probability.
    max_concurrent_sessions: int | None = None
    quota_refusal_rate: float = 0.0
    not_implemented_rate: float = 0.0
    expired_api_keys: frozenset[str] = frozenset()
    # inputTranscription pieces while the user speaks, each sent this late (seconds).
    input_transcript_streaming: bool = False
    input_transcript_lag: float = 0.0
    # usageMetadata messages per reply (running totals; the last one on turnComplete).
    usage_updates_per_turn: int = 1
    # Pitch (Hz, rounded to 10) of an audio turn -> `call <name> <JSON>` lines to run.
    audio_tool_calls: dict[int, str] = field(default_factory=dict)
    # The model says a short sentence before each toolCall.
    tool_preamble: bool = False
    # Every server message leaves after latency +/- uniform jitter, in order (seconds).
    latency: float = 0.0
    jitter: float = 0.0
    # Input audio more than this many seconds ahead of real time is discarded unheard.
    realtime_audio_buffer: float | None = None

    def __post_init__(self) -> None:
        if self.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        rates = ("empty_turn_rate", "silent_turn_rate", "quota_refusal_rate")
        for name in (*rates, "not_implemented_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.empty_turn_rate + self.silent_turn_rate > 1.0:
            raise ValueError("empty_turn_rate + silent_turn_rate must be at most 1")
        if self.usage_updates_per_turn < 1:
            raise ValueError("usage_updates_per_turn must be at least 1")

    def scaled(self, seconds: float) -> float:
        """A service-side duration in real seconds under `time_scale`."""
        return seconds / self.time_scale

    @classmethod
    def realistic(cls, **overrides: Any) -> EmulatorConfig:
        """The realistic profile (profiles.REALISTIC) with these fields changed."""
        # Imported here: profiles.py builds on this module.
        from voice_platform.live_emulator.profiles import realistic

        return realistic(**overrides)
