"""The server's CPU time and resident memory while the load runs.

Two sources: `--server-pid` (local processes, read with psutil: exact, summed over the
given processes) or the server's `/metrics` with `--metrics-token` (the Prometheus client's
`process_cpu_seconds_total` and `process_resident_memory_bytes` of the process that
answers). In multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, several web processes) the
scrape carries no `process_*` series; the probe then says so and `--server-pid` is the way.

Behind a balancer consecutive scrapes may be answered by different processes. Each reading
therefore names its process: `process_start_time_seconds` (the platform's /metrics has no
pid or host label), which two processes share only if they started in the same 10 ms
(the kernel's clock tick); the report subtracts only readings of the same process.
"""

from __future__ import annotations

import time

import psutil  # type: ignore[import-untyped]  # ships without type hints
import requests
from prometheus_client.parser import text_string_to_metric_families

from loadtest.config import LoadConfig
from loadtest.net import http_session
from loadtest.stats import ServerSample

MIB = 1024 * 1024


class ServerProbe:
    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.source: str | None = None
        self.reason = "no --server-pid or --metrics-token given"
        self.http = http_session()
        if config.server_pids:
            self.source = "pid"
        elif config.metrics_token:
            self.source = "metrics"

    def sample(self) -> ServerSample | None:
        """One reading, or None (with `reason` set) when the source cannot give one."""
        if self.source == "pid":
            return self._from_pids()
        if self.source == "metrics":
            return self._from_metrics()
        return None

    def _from_pids(self) -> ServerSample | None:
        cpu, rss = 0.0, 0
        try:
            for pid in self.config.server_pids:
                process = psutil.Process(pid)
                times = process.cpu_times()
                cpu += times.user + times.system
                rss += process.memory_info().rss
        except psutil.Error as exc:
            self.reason = f"server process unreadable: {exc}"
            return None
        pids = ",".join(str(pid) for pid in self.config.server_pids)
        return ServerSample(at=time.monotonic(), cpu_seconds=cpu, rss_bytes=rss, process=pids)

    def _from_metrics(self) -> ServerSample | None:
        try:
            response = self.http.get(
                f"{self.config.target}/metrics",
                headers={"Authorization": f"Bearer {self.config.metrics_token}"},
                timeout=5,
                allow_redirects=False,  # never to another host (loadtest.net)
            )
        except requests.RequestException as exc:
            self.reason = f"/metrics unreachable: {type(exc).__name__}"
            return None
        if response.status_code != 200:
            self.reason = f"/metrics answered HTTP {response.status_code}" + (
                " (the server has no METRICS_TOKEN set)" if response.status_code == 404 else ""
            )
            return None
        cpu: float | None = None
        rss: float | None = None
        started: float | None = None
        try:
            for family in text_string_to_metric_families(response.text):
                for metric in family.samples:
                    if metric.name == "process_cpu_seconds_total":
                        cpu = metric.value
                    elif metric.name == "process_resident_memory_bytes":
                        rss = metric.value
                    elif metric.name == "process_start_time_seconds":
                        started = metric.value
        except ValueError as exc:
            self.reason = f"/metrics is not Prometheus text: {exc}"
            return None
        if cpu is None or rss is None or started is None:
            self.reason = "/metrics has no process_* series (multiprocess mode): use --server-pid"
            return None
        return ServerSample(
            at=time.monotonic(), cpu_seconds=cpu, rss_bytes=int(rss), process=f"start {started}"
        )
