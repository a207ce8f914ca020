"""OpenTelemetry traces of live sessions: one session span per connection, a turn span per
turn under it, a tool span per tool call under its turn (docs/traces.md).

Spans are started with explicit parents, never through the current-span context variable:
the bridge's tasks interleave, so "current" would be whichever task ran last. Names and
attributes follow the OpenTelemetry GenAI semantic conventions where one exists; ours
carry the ``voice.`` prefix. The user's and the model's words reach a span only when
``TRACING_INCLUDE_CONTENT`` is on; tool arguments and results never do.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from django.conf import settings
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from voice_platform.observability import tracing_setup

if TYPE_CHECKING:
    from sessions.turn_timing import TurnTiming
    from voice_platform.observability.labels import SessionLabels

# GenAI semantic conventions (spelled out: the semconv package's gen_ai module is
# incubating and marked as moved to its own repository).
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_AGENT_ID = "gen_ai.agent.id"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE = "gen_ai.tool.type"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
ERROR_TYPE = "error.type"
PROVIDER = "gcp.gemini"  # the Gemini Developer API (Live), as the conventions name it

SESSION_SPAN = "voice.session"
# A tool call's status that is the tool's failure (a cancelled call is the model's choice).
TOOL_ERRORS = frozenset({"failed", "rejected", "timeout"})
# The turn's figures (sessions.turn_timing.TurnTiming), as voice.turn.<name> attributes.
TIMING_FIELDS = (
    "reply_in_ms", "reply_out_ms", "playback_ms", "tool_ms", "reconnect_gap_ms",
    "speech_end_source", "outcome", "audio",
)  # fmt: skip


class SessionTrace:
    """The spans of one connection: session -> turn -> tool. This base records nothing:
    it is what a connection gets while tracing is off (every call a no-op)."""

    def turn_started(self, turn: int) -> None:
        """The user's speech ended: a turn span opens (child of the session span)."""

    def turn_finished(self, timing: TurnTiming) -> None:
        """The turn is over: its span closes with the timing's figures as attributes."""

    def turn_words(self, role: str, text: str) -> None:
        """One utterance of the open turn ("user" or "model"): user content, recorded on the
        turn span only when TRACING_INCLUDE_CONTENT allows it."""

    def tool_started(self, key: str, name: str, call_id: str | None = None) -> None:
        """A tool call began: a span opens under the open turn (or the session)."""

    def tool_finished(self, key: str, *, status: str) -> None:
        """A tool call settled: its span closes."""

    def reconnected(self, *, cause: str, gap_seconds: float | None) -> None:
        """An upstream outage ended: an event on the session span."""

    def end(self, *, reason: str, failed: bool = False) -> None:
        """The connection stopped serving the session: every open span closes."""


class _Words:
    """A turn's utterances, as the GenAI conventions' input/output message attributes."""

    def __init__(self) -> None:
        self.user: list[str] = []
        self.model: list[str] = []

    def add(self, role: str, text: str) -> None:
        (self.user if role == "user" else self.model).append(text)

    def attributes(self) -> dict[str, AttributeValue]:
        found: dict[str, AttributeValue] = {}
        if self.user:
            found[GEN_AI_INPUT_MESSAGES] = _messages("user", self.user)
        if self.model:
            found[GEN_AI_OUTPUT_MESSAGES] = _messages("assistant", self.model)
        return found


def _messages(role: str, texts: list[str]) -> str:
    parts = [{"type": "text", "content": text} for text in texts]
    return json.dumps([{"role": role, "parts": parts}], ensure_ascii=False)


def _one(role: str, text: str) -> dict[str, AttributeValue]:
    words = _Words()
    words.add(role, text)
    return words.attributes()


class _Turn:
    __slots__ = ("span", "words")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.words = _Words()


class _SpanTrace(SessionTrace):
    """The recording trace. Every method runs on the bridge's event loop: no locking."""

    def __init__(self, tracer: trace.Tracer, labels: SessionLabels, *, resumed: bool) -> None:
        self._tracer = tracer
        self._content = bool(settings.TRACING_INCLUDE_CONTENT)
        self._common: dict[str, AttributeValue] = {
            GEN_AI_PROVIDER_NAME: PROVIDER,
            GEN_AI_REQUEST_MODEL: labels.model,
            GEN_AI_CONVERSATION_ID: labels.session_id,
            "voice.tenant.id": labels.tenant_id,
            "voice.session.id": labels.session_id,
        }
        if labels.agent_id is not None:
            self._common[GEN_AI_AGENT_ID] = str(labels.agent_id)
            self._common["voice.agent.id"] = labels.agent_id
        self._session = tracer.start_span(
            SESSION_SPAN,
            # An empty context: the session is a root, whatever ran before on this task.
            context=otel_context.Context(),
            # Internal, not server: a long-lived connection would skew request-latency views.
            kind=SpanKind.INTERNAL,
            attributes={
                **self._common,
                "voice.tenant.slug": labels.tenant_slug,
                "voice.session.resumed": resumed,
                "voice.session.modality": labels.modality,
            },
        )
        self._turns: dict[int, _Turn] = {}  # started, not finished (normally at most one)
        self._open_turn: int | None = None  # the newest started turn, until it finishes
        self._tools: dict[str, trace.Span] = {}  # by request key
        self._held: list[str] = []  # the user's words that came before their turn opened
        self._ended = False

    def _child_of(self, parent: trace.Span) -> otel_context.Context:
        return trace.set_span_in_context(parent, otel_context.Context())

    def turn_started(self, turn: int) -> None:
        if self._ended or turn in self._turns:
            return
        span = self._tracer.start_span(
            "invoke_agent",
            context=self._child_of(self._session),
            kind=SpanKind.INTERNAL,
            attributes={**self._common, GEN_AI_OPERATION_NAME: "invoke_agent", "voice.turn": turn},
        )
        entry = self._turns[turn] = _Turn(span)
        self._open_turn = turn
        # A typed turn reports its words first, then that it ended: they belong to it.
        held, self._held = self._held, []
        for text in held:
            self._add_words(entry, "user", text)

    def turn_finished(self, timing: TurnTiming) -> None:
        entry = self._turns.pop(timing.turn, None)
        if self._open_turn == timing.turn:
            self._open_turn = None
        if entry is None:
            return
        for name in TIMING_FIELDS:
            value = getattr(timing, name)
            if value is not None:
                entry.span.set_attribute(f"voice.turn.{name}", value)
        entry.span.end()

    def turn_words(self, role: str, text: str) -> None:
        if not self._content or self._ended:
            return  # user content stays out of traces unless allowed
        entry = self._turns.get(self._open_turn) if self._open_turn is not None else None
        if entry is not None:
            self._add_words(entry, role, text)
        elif role == "user":
            self._held.append(text)  # a typed turn reports its words before it opens
        else:  # the model spoke outside a turn (a late transcription): the session's words
            self._session.add_event("voice.words", _one(role, text))

    def _add_words(self, entry: _Turn, role: str, text: str) -> None:
        entry.words.add(role, text)
        entry.span.set_attributes(entry.words.attributes())

    def tool_started(self, key: str, name: str, call_id: str | None = None) -> None:
        if self._ended or key in self._tools:
            return
        entry = self._turns.get(self._open_turn) if self._open_turn is not None else None
        parent = entry.span if entry is not None else self._session
        self._tools[key] = self._tracer.start_span(
            f"execute_tool {name}",
            context=self._child_of(parent),
            kind=SpanKind.INTERNAL,
            attributes={
                **self._common,
                GEN_AI_OPERATION_NAME: "execute_tool",
                GEN_AI_TOOL_NAME: name,
                GEN_AI_TOOL_TYPE: "function",
                GEN_AI_TOOL_CALL_ID: call_id or key,
                "voice.tool.key": key,
            },
        )

    def tool_finished(self, key: str, *, status: str) -> None:
        span = self._tools.pop(key, None)
        if span is None:
            return
        span.set_attribute("voice.tool.status", status)
        if status in TOOL_ERRORS:
            span.set_attribute(ERROR_TYPE, status)
            span.set_status(Status(StatusCode.ERROR, f"tool call {status}"))
        span.end()

    def reconnected(self, *, cause: str, gap_seconds: float | None) -> None:
        if self._ended:
            return
        attributes: dict[str, AttributeValue] = {
            "voice.reconnect.cause": cause,
            "voice.reconnect.recovered": gap_seconds is not None,
        }
        if gap_seconds is not None:
            attributes["voice.reconnect.gap_ms"] = round(gap_seconds * 1000, 1)
        self._session.add_event("voice.reconnect", attributes)

    def end(self, *, reason: str, failed: bool = False) -> None:
        if self._ended:
            return
        self._ended = True
        # Children first, so that no span outlives its parent.
        for span in self._tools.values():
            span.set_attribute("voice.tool.status", "unsettled")
            span.end()
        self._tools.clear()
        for entry in self._turns.values():
            entry.span.set_attribute("voice.turn.outcome", "unfinished")
            entry.span.end()
        self._turns.clear()
        self._open_turn = None
        for text in self._held:  # typed, but the turn never opened
            self._session.add_event("voice.words", _one("user", text))
        self._session.set_attribute("voice.session.end_reason", reason)
        if failed:
            self._session.set_attribute(ERROR_TYPE, reason)
            self._session.set_status(Status(StatusCode.ERROR, reason))
        self._session.end()


def session_trace(labels: SessionLabels, *, resumed: bool) -> SessionTrace:
    """The trace of a new connection: recording when tracing is on, else the no-op base."""
    tracer = tracing_setup.session_tracer()
    if tracer is None:
        return SessionTrace()
    return _SpanTrace(tracer, labels, resumed=resumed)
