"""Prometheus metrics of live sessions: what ``SessionTelemetry`` reports, as counters,
gauges and histograms. docs/metrics.md lists every metric and the label rule.

With ``PROMETHEUS_MULTIPROC_DIR`` set, every server process of a host writes its values to
files in that directory (prometheus_client's multiprocess mode) and any process's
``/metrics`` sums them all (``metrics_view``). Without it, a process reports its own.

Labels stay bounded: a tenant label (at most ``METRICS_TENANT_LABEL_LIMIT`` tenants per
process, later ones as ``_other``) on the session and tool counters only; no agent or
session label anywhere; causes, reasons, statuses, models and tool names from fixed sets.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sessions.turn_timing import LATENCY_BUCKETS_MS
from voice_platform.observability import loop_lag
from voice_platform.observability.metric_labels import (
    end_reason_label,
    model_label,
    reconnect_cause_label,
    tenant_label,
    tool_name_label,
    tool_status_label,
)
from voice_platform.observability.prometheus_mode import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from sessions.turn_timing import TurnTiming
    from voice_platform.observability.labels import SessionLabels

# OpenTelemetry GenAI attributes of the model calls (semconv names, dots as underscores):
# a Live session is Gemini's BidiGenerateContent, served by the Gemini API.
OPERATION = "generate_content"
PROVIDER = "gcp.gemini"

_LATENCY_BUCKETS = tuple(ms / 1000 for ms in LATENCY_BUCKETS_MS)
# OpenTelemetry's advisory buckets for gen_ai.client.token.usage.
_TOKEN_BUCKETS = tuple(4**n for n in range(14))
_TOOL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_GAP_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60)
_GENAI = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")

SESSIONS_ACTIVE = Gauge(
    "voice_sessions_active",
    "Live connections serving a session now (summed over the host's processes).",
    multiprocess_mode="livesum",
)
SESSIONS_STARTED = Counter(
    "voice_sessions_started",
    "Connections that began serving a session; resumed=yes when an existing one came back.",
    ["tenant", "resumed"],
)
SESSIONS_ENDED = Counter(
    "voice_sessions_ended", "Sessions that ended for good, by reason.", ["tenant", "reason"]
)
RECONNECTS = Counter(
    "voice_upstream_reconnects",
    "Upstream (model) outages by cause; recovered=no when the call could not go on.",
    ["cause", "recovered"],
)
RECONNECT_GAP = Histogram(
    "voice_upstream_reconnect_gap_seconds",
    "How long a recovered upstream outage lasted, from the drop to the model ready again.",
    buckets=_GAP_BUCKETS,
)
AUDIO_FRAMES = Counter(
    "voice_audio_frames", "Audio frames: in from clients, out from the model.", ["direction"]
)
AUDIO_BYTES = Counter(
    "voice_audio_bytes", "Audio bytes: in from clients, out from the model.", ["direction"]
)
TOKEN_USAGE = Histogram(
    "gen_ai_client_token_usage",
    "Tokens per turn (semconv gen_ai.client.token.usage), by gen_ai_token_type.",
    [*_GENAI, "gen_ai_token_type"],
    buckets=_TOKEN_BUCKETS,
)
TIME_TO_FIRST_CHUNK = Histogram(
    "gen_ai_client_operation_time_to_first_chunk_seconds",
    "From the end of the user's speech to the model's first output at the platform "
    "(reply_in; semconv gen_ai.client.operation.time_to_first_chunk).",
    _GENAI,
    buckets=_LATENCY_BUCKETS,
)
REPLY_OUT = Histogram(
    "voice_turn_reply_out_seconds",
    "From the end of the user's speech to the first reply written to the client.",
    buckets=_LATENCY_BUCKETS,
)
PLAYBACK = Histogram(
    "voice_turn_playback_seconds",
    "Voice-to-voice: from the end of the user's speech to the client starting playback.",
    buckets=_LATENCY_BUCKETS,
)
TURN_TOOL_TIME = Histogram(
    "voice_turn_tool_seconds",
    "Time a turn spent with a tool call in flight (turns with tool calls only).",
    buckets=_TOOL_BUCKETS,
)
SESSION_START = Histogram(
    "voice_session_start_seconds",
    "From the WebSocket's connect to session.started, by stage: platform (token check, "
    "session row, setup; the upstream handshake excluded) and upstream (the model's handshake).",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
TURNS = Counter("voice_turns", "Finished turns by outcome.", ["outcome"])
TOOL_CALLS = Counter(
    "voice_tool_calls", "Tool calls settled, by status.", ["tenant", "tool", "status"]
)
TOOL_DURATION = Histogram(
    "gen_ai_execute_tool_duration_seconds",
    "How long the conversation waited for a tool call that was admitted "
    "(semconv gen_ai.execute_tool.duration).",
    ["gen_ai_operation_name", "gen_ai_tool_name"],
    buckets=_TOOL_BUCKETS,
)


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def session_started(labels: SessionLabels, *, resumed: bool) -> None:
    """A connection began serving a session (``resumed``: an existing one came back)."""
    SESSIONS_ACTIVE.inc()
    SESSIONS_STARTED.labels(tenant_label(labels.tenant_slug), _yes_no(resumed)).inc()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not on an event loop (a synchronous caller): nothing to watch
        return
    loop_lag.session_opened(loop)


def session_start_timed(*, platform_seconds: float, upstream_seconds: float | None) -> None:
    """How long a session start took, split into our share and the upstream handshake's."""
    SESSION_START.labels("platform").observe(max(0.0, platform_seconds))
    if upstream_seconds is not None:
        SESSION_START.labels("upstream").observe(upstream_seconds)


def connection_closed(labels: SessionLabels) -> None:
    """A connection stopped serving its session (ended, detached, superseded, restart)."""
    SESSIONS_ACTIVE.dec()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    loop_lag.session_closed(loop)


def session_ended(labels: SessionLabels, *, reason: str, failed: bool) -> None:
    """The session ended for good with ``reason``."""
    SESSIONS_ENDED.labels(tenant_label(labels.tenant_slug), end_reason_label(reason)).inc()


def session_ended_unattached(tenant_slug: str, *, reason: str) -> None:
    """A session no connection held ended (its resume window ran out, or REST ended it
    while detached): counted by the process that ended the row."""
    SESSIONS_ENDED.labels(tenant_label(tenant_slug), end_reason_label(reason)).inc()


def reconnected(labels: SessionLabels, *, cause: str, gap_seconds: float | None) -> None:
    """An upstream outage ended (``gap_seconds`` None: it never recovered)."""
    RECONNECTS.labels(reconnect_cause_label(cause), _yes_no(gap_seconds is not None)).inc()
    if gap_seconds is not None:
        RECONNECT_GAP.observe(gap_seconds)


def traffic(
    labels: SessionLabels, *, frames_in: int, bytes_in: int, frames_out: int, bytes_out: int
) -> None:
    """Deltas of client frames/bytes up and model frames/bytes down since the last call."""
    for direction, frames, size in (("in", frames_in, bytes_in), ("out", frames_out, bytes_out)):
        if frames:
            AUDIO_FRAMES.labels(direction).inc(frames)
        if size:
            AUDIO_BYTES.labels(direction).inc(size)


def tokens(labels: SessionLabels, *, input_tokens: int, output_tokens: int) -> None:
    """Token usage deltas: the bridge flushes at each turn's end, so one delta is a turn."""
    model = model_label(labels.model)
    for kind, count in (("input", input_tokens), ("output", output_tokens)):
        if count > 0:  # a flush without a turn's usage is no turn of zero tokens
            TOKEN_USAGE.labels(OPERATION, PROVIDER, model, kind).observe(count)


def turn_timed(labels: SessionLabels, timing: TurnTiming) -> None:
    """A finished turn's timing (``sessions.turn_timing.TurnTiming``)."""
    TURNS.labels(timing.outcome).inc()
    if timing.reply_in_ms is not None:
        TIME_TO_FIRST_CHUNK.labels(OPERATION, PROVIDER, model_label(labels.model)).observe(
            timing.reply_in_ms / 1000
        )
    if timing.reply_out_ms is not None:
        REPLY_OUT.observe(timing.reply_out_ms / 1000)
    if timing.playback_ms is not None:
        PLAYBACK.observe(timing.playback_ms / 1000)
    if timing.tool_ms > 0:
        TURN_TOOL_TIME.observe(timing.tool_ms / 1000)


def tool_finished(labels: SessionLabels, *, name: str, status: str, seconds: float) -> None:
    """A tool call settled with ``status`` after ``seconds`` (as the conversation waited)."""
    tool = tool_name_label(name)
    status = tool_status_label(status)
    TOOL_CALLS.labels(tenant_label(labels.tenant_slug), tool, status).inc()
    if status != "rejected":  # refused before it ran: no time to speak of
        TOOL_DURATION.labels("execute_tool", tool).observe(seconds)
