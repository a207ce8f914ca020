"""Every knob of the emulator in one dataclass, so the CLI, tests and bench share defaults."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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
