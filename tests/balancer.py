"""Debian's HAProxy in front of test server processes, with the deployment's own config.

``deploy/haproxy.cfg`` is the file docker-compose mounts; here its bind port and server lines
are pointed at local ports, everything else (health checks, tunnel timeouts) is as deployed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import IN_CI
from tests.processes import ROOT, free_port, wait_listening

CONFIG = ROOT / "deploy" / "haproxy.cfg"


def haproxy_binary() -> str:
    """The haproxy executable; fails the test (``make balancer`` installs it)."""
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).exists()), None
    )
    if found is None:
        missing = "haproxy is not installed: run `make balancer` (Debian's haproxy package)"
        if IN_CI:  # CI tests the real deployment: a missing balancer fails, never skips
            pytest.fail(missing)
        pytest.skip(missing)
    return found


def render_config(*, port: int, backends: list[int]) -> str:
    """The deployed config with its bind port and one server line per local backend port."""
    text = CONFIG.read_text()
    text = re.sub(r"bind \*:\d+", f"bind 127.0.0.1:{port}", text)
    servers = "\n".join(
        f"    server web{i} 127.0.0.1:{backend} check" for i, backend in enumerate(backends, 1)
    )
    text = re.sub(r"(    server web\d+ \S+ check\n)+", servers + "\n", text)
    # HAProxy needs about 2 descriptors per connection and refuses to start above the
    # descriptor limit (a test machine's may be 20,000): a test needs a few hundred.
    text = re.sub(r"maxconn \d+", "maxconn 2000", text)
    # One process, in the foreground: the test owns its lifetime.
    return text.replace("global\n", "global\n    nbthread 1\n", 1)


def start_haproxy(backends: list[int], workdir: Path) -> tuple[subprocess.Popen[Any], int]:
    """HAProxy on a free port balancing ``backends``; returns (process, port)."""
    port = free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(render_config(port=port, backends=backends))
    log = (workdir / "haproxy.log").open("wb")
    proc = subprocess.Popen(
        [haproxy_binary(), "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    wait_listening(port)
    return proc, port
