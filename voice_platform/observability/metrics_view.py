"""``/metrics``: every metric in Prometheus's text format, for those ``metrics_guard`` lets in.

In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) a scrape reads every process's files in
the directory, so any process of the host answers for all of them: Prometheus scrapes one
address per host (any of its processes) and sums hosts. Otherwise the process's own registry
(with the client library's process and Python collectors) answers.
"""

from __future__ import annotations

import glob
import os
import re

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.exposition import choose_encoder

from voice_platform.observability import metrics  # noqa: F401  (defines the metrics)
from voice_platform.observability.collectors import scrape_time_collectors
from voice_platform.observability.metrics_guard import Access, metrics_access
from voice_platform.observability.prometheus_mode import multiprocess_dir

_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    access = metrics_access(request)
    if access is Access.UNCONFIGURED:
        raise Http404
    if access is Access.DENIED:
        response = HttpResponse("A metrics credential is required.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(scrape_registry()), content_type=content_type)


def scrape_registry() -> CollectorRegistry:
    """A registry holding everything one scrape reports."""
    registry = CollectorRegistry()
    path = multiprocess_dir()
    if path:
        forget_dead_processes(path)
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    else:
        registry.register(REGISTRY)
    for collector in scrape_time_collectors():
        registry.register(collector)
    return registry


def forget_dead_processes(path: str) -> None:
    """Take the live gauges of processes that are gone out of the sums.

    A process that exits cleanly does this for itself (``metrics``); one that was killed
    (SIGKILL, the OOM killer) leaves its files, and its active sessions would be counted
    for ever. Counters and histograms stay: they are totals, and must not go down.
    """
    for file in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        found = _LIVE_GAUGE_FILE.match(os.path.basename(file))
        if found is not None and not _alive(int(found.group(1))):
            multiprocess.mark_process_dead(int(found.group(1)), path)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
