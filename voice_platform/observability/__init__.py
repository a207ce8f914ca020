"""Metrics (Prometheus), traces (OpenTelemetry) and log context for live sessions.

``telemetry.SessionTelemetry`` is the one object a live connection reports through;
``metrics`` and ``tracing`` are its two outputs. docs/observability.md documents them.
"""
