"""Figures read at scrape time rather than counted as they happen: the tool queue's depth.

Tool calls wait in the broker's ``TOOL_CELERY_QUEUE`` for a Celery worker when tools run
on Celery (``TOOL_EXECUTION = "celery"``); a growing queue means too few workers, and every
conversation waiting on a tool hears it. The depth is read from the broker through kombu
(Celery's own transport, so any broker Celery supports works) with a short timeout: an
unreachable broker costs the scrape at most ``TIMEOUT`` seconds and the sample is left
out, which Prometheus shows as the series being absent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from voice_platform.celery import app as celery_app

log = logging.getLogger(__name__)

TIMEOUT = 1.0  # seconds: connecting and each broker round trip
# One warning per this many seconds while the broker is unreachable, not one per scrape.
_WARN_EVERY = 300.0
_last_warning = -_WARN_EVERY


class CeleryQueueDepthCollector(Collector):
    """``voice_celery_queue_depth{queue}``: messages waiting in the tool queue."""

    def __init__(self, queue: str, broker_url: str | None = None) -> None:
        self.queue = queue
        self.broker_url = broker_url  # None: Celery's configured broker

    def collect(self) -> Iterator[Metric]:
        depth = self.depth()
        if depth is None:
            return
        family = GaugeMetricFamily(
            "voice_celery_queue_depth",
            "Tool calls waiting in the broker for a Celery worker.",
            labels=["queue"],
        )
        family.add_metric([self.queue], depth)
        yield family

    def depth(self) -> int | None:
        """The queue's length now, or None when the broker does not answer in time."""
        options = {
            "socket_timeout": TIMEOUT,
            "socket_connect_timeout": TIMEOUT,
            "max_retries": 0,
        }
        try:
            with celery_app.connection_for_read(
                self.broker_url, connect_timeout=TIMEOUT, transport_options=options
            ) as connection:
                connection.ensure_connection(max_retries=0)  # one try: a scrape must not wait
                # kombu's stubs type the channel as the minimal StdChannel.
                channel: Any = connection.default_channel
                try:
                    # Passive: never creates the queue; an empty Redis queue has no key.
                    _, count, _ = channel.queue_declare(queue=self.queue, passive=True)
                except connection.channel_errors:
                    return 0
                return int(count)
        except Exception as exc:  # any broker error: no sample rather than a failed scrape
            _warn(exc)
            return None


def _warn(exc: Exception) -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= _WARN_EVERY:
        _last_warning = now
        # The exception's type only: a broker error's text may carry its URL.
        log.warning("metrics: the tool queue's depth could not be read: %s", type(exc).__name__)


def scrape_time_collectors() -> list[Collector]:
    """The collectors a scrape adds, per the settings: the queue only when tools use it."""
    if settings.TOOL_EXECUTION != "celery":
        return []
    return [CeleryQueueDepthCollector(settings.TOOL_CELERY_QUEUE)]
