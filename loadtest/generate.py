"""The load generator's own process: `python -m loadtest.generate` (started by the command).

Locust's import monkey-patches the process for gevent, and patching a process that has
already imported `ssl` and opened Django's database connections breaks both (ssl recurses,
Django sees "threads" change). So the management command checks its options in Django's
process and runs the callers here, in a fresh interpreter that imports Locust first. The
settings (API key included) come on stdin, never in the argument list (`ps` shows that);
progress lines go to stderr and the report, as JSON, to the path the settings name.
"""

import locust  # noqa: F401, I001  (first: its import monkey-patches the process)

import json
import signal
import sys
from pathlib import Path

import gevent  # type: ignore[import-untyped]  # ships without type hints

from loadtest.config import LoadConfig
from loadtest.net import drop_proxy_environment
from loadtest.runner import run, stop


def main() -> None:
    drop_proxy_environment()  # straight to the target, never through a proxy (loadtest.net)
    request = json.loads(sys.stdin.read())
    config = LoadConfig.from_json(request["config"])
    # Ctrl-C: the callers hang up now and the report is still written.
    gevent.signal_handler(signal.SIGINT, stop)
    gevent.signal_handler(signal.SIGTERM, stop)
    result = run(config, sys.stderr)
    Path(request["report_path"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
