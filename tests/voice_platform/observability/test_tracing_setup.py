"""``tracing_setup``: the provider is installed once, lazily, and exports over OTLP/HTTP to
the endpoint the standard environment variables name (a local receiver stands in for the
collector: no network)."""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
)

from voice_platform.observability import tracing_setup


@pytest.fixture
def no_endpoint(monkeypatch):
    monkeypatch.delenv(OTEL_EXPORTER_OTLP_ENDPOINT, raising=False)
    monkeypatch.delenv(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, raising=False)
    tracing_setup.shutdown()
    yield
    tracing_setup.shutdown()  # nothing installed stays behind for other tests


@pytest.fixture
def collector():
    """A local OTLP/HTTP receiver: the (path, body) of every POST."""
    received: list[tuple[str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("variable", "suffix", "path"),
    [
        (OTEL_EXPORTER_OTLP_ENDPOINT, "", "/v1/traces"),  # the SDK appends the signal path
        (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "/custom/traces", "/custom/traces"),  # as is
    ],
)
def test_tracing_setup_exports_over_otlp_to_the_configured_endpoint(
    settings, monkeypatch, no_endpoint, collector, variable, suffix, path
):
    base, received = collector
    monkeypatch.setenv(variable, base + suffix)
    settings.TRACING_ENABLED = True
    settings.OTEL_SERVICE_NAME = "voice-test"
    tracer = tracing_setup.session_tracer()
    assert tracer is not None
    tracer.start_span("voice.session").end()
    assert received == []  # batched: not on the caller's time
    tracing_setup.shutdown()  # flushes the batch
    ((got_path, body),) = received
    assert got_path == path
    request = ExportTraceServiceRequest.FromString(body)
    (resource_spans,) = request.resource_spans
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "voice-test"
    assert [s.name for s in resource_spans.scope_spans[0].spans] == ["voice.session"]


def test_tracing_setup_without_an_endpoint_installs_nothing(settings, no_endpoint, caplog):
    settings.TRACING_ENABLED = True
    with caplog.at_level(logging.WARNING, logger="voice_platform.observability.tracing_setup"):
        assert tracing_setup.session_tracer() is None
    assert OTEL_EXPORTER_OTLP_ENDPOINT in caplog.text
    assert tracing_setup.otlp_exporter() is None


def test_tracing_setup_off_installs_nothing(settings, no_endpoint, monkeypatch):
    monkeypatch.setenv(OTEL_EXPORTER_OTLP_ENDPOINT, "http://127.0.0.1:9")
    settings.TRACING_ENABLED = False
    assert tracing_setup.session_tracer() is None


def test_tracing_setup_installs_once_across_threads(settings, no_endpoint, monkeypatch):
    monkeypatch.setenv(OTEL_EXPORTER_OTLP_ENDPOINT, "http://127.0.0.1:9")
    settings.TRACING_ENABLED = True
    builds = []
    build = tracing_setup._build

    def slow_build():
        builds.append(1)
        time.sleep(0.05)  # widen the window in which a second thread could build too
        return build()

    monkeypatch.setattr(tracing_setup, "_build", slow_build)
    start = threading.Barrier(6)
    tracers = []

    def first_use() -> None:
        start.wait()
        tracers.append(tracing_setup.session_tracer())

    threads = [threading.Thread(target=first_use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert len(tracers) == 6
    assert tracers[0] is not None
    assert all(tracer is tracers[0] for tracer in tracers)


def test_tracing_setup_test_seam_leaves_nothing_installed(settings, no_endpoint):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    settings.TRACING_ENABLED = True
    exporter = InMemorySpanExporter()
    with tracing_setup.exporting_to(exporter):
        tracing_setup.session_tracer().start_span("inside").end()
    assert [s.name for s in exporter.get_finished_spans()] == ["inside"]
    assert tracing_setup.session_tracer() is None  # no endpoint: off again, seam gone
