"""This process's OpenTelemetry tracer: installed once, on first use, when tracing is on.

``session_tracer()`` answers None while ``TRACING_ENABLED`` is off or no OTLP endpoint is
configured, and then no provider exists at all: a session's trace calls cost one check.
When on, one ``TracerProvider`` (resource: ``service.name`` = ``OTEL_SERVICE_NAME``)
batches spans to an ``OTLPSpanExporter`` (OTLP/HTTP, protobuf), which reads its endpoint,
headers and timeout from the SDK's standard ``OTEL_EXPORTER_OTLP_*`` variables.

The provider is this module's own, not the OpenTelemetry API's global one: the global is
set-once per process (tests could never take it back) and nothing else here is
instrumented. ``exporting_to`` is the test seam. docs/traces.md documents the spans.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Tracer

log = logging.getLogger(__name__)

TRACER_NAME = "voice_platform.sessions"


@dataclass(frozen=True)
class _Installed:
    provider: TracerProvider | None  # None: tracing is off in this process
    tracer: Tracer | None


_lock = threading.Lock()
_installed: _Installed | None = None  # None: not decided yet (first use decides)
_test_exporter: SpanExporter | None = None


def session_tracer() -> Tracer | None:
    """The tracer for session spans, or None when tracing is off. Thread-safe; the first
    call installs the provider (or decides there is none) for the process's lifetime."""
    installed = _installed  # read once: the common path takes no lock
    if installed is None:
        installed = _install()
    return installed.tracer


def _install() -> _Installed:
    global _installed
    with _lock:  # two threads' first calls must not build two providers (two exporters)
        if _installed is None:
            _installed = _build()
        return _installed


def _build() -> _Installed:
    if not settings.TRACING_ENABLED:
        return _Installed(None, None)
    processor: SpanProcessor
    if _test_exporter is not None:
        # Synchronous: a test reads its spans the moment they end.
        processor = SimpleSpanProcessor(_test_exporter)
    else:
        exporter = otlp_exporter()
        if exporter is None:
            log.warning(
                "TRACING_ENABLED is on but neither %s nor %s is set: no traces are exported",
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                OTEL_EXPORTER_OTLP_ENDPOINT,
            )
            return _Installed(None, None)
        processor = BatchSpanProcessor(exporter)  # exports off the event loop, in batches
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.OTEL_SERVICE_NAME}))
    provider.add_span_processor(processor)
    return _Installed(provider, provider.get_tracer(TRACER_NAME))


def otlp_exporter() -> OTLPSpanExporter | None:
    """An OTLP/HTTP exporter configured by the standard environment variables, or None when
    no endpoint is set (the SDK would otherwise post to localhost:4318 on its own)."""
    names = (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT)
    if not any(os.environ.get(name) for name in names):
        return None
    return OTLPSpanExporter()


def shutdown() -> None:
    """Flush and drop this process's provider; the next use decides again. The SDK also
    flushes at interpreter exit (``shutdown_on_exit``), so servers need not call this."""
    global _installed
    with _lock:
        installed, _installed = _installed, None
    if installed is not None and installed.provider is not None:
        installed.provider.shutdown()


@contextmanager
def exporting_to(exporter: SpanExporter) -> Iterator[None]:
    """For tests: spans go to ``exporter`` as they end (when ``TRACING_ENABLED`` is on at
    first use), and nothing stays installed afterwards."""
    global _test_exporter
    shutdown()
    _test_exporter = exporter
    try:
        yield
    finally:
        shutdown()
        _test_exporter = None
