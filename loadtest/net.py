"""How the generator reaches its target: straight to the address it was given.

Without --allow-remote the target is a literal loopback address (loadtest/config.py); a
proxy from the environment, or a redirect, would take the load somewhere else. So
requests' sessions ignore the environment (`trust_env=False`: no HTTP(S)_PROXY, no .netrc)
and follow no redirect, and the generator's process drops the proxy variables before its
first connection: websocket-client (1.9) reads `http_proxy`/`https_proxy` from the
environment whenever no proxy host is passed, and has no option that turns that off
(`http_no_proxy` is only read together with an explicit `http_proxy_host`).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

import requests

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def drop_proxy_environment(environ: MutableMapping[str, str] = os.environ) -> None:
    """Remove every proxy variable (either case) from ``environ``."""
    for name in list(environ):
        if name.lower() in PROXY_VARIABLES:
            del environ[name]


def http_session() -> requests.Session:
    """A session that ignores proxies and credentials from the environment. Every request
    passes ``allow_redirects=False`` (a session has no switch for that)."""
    session = requests.Session()
    session.trust_env = False
    return session


def is_redirect(status: int) -> bool:
    return 300 <= status < 400
