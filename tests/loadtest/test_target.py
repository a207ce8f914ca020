"""The generator reaches only the address it was given: the loopback rule resolves no
name, and no proxy from the environment nor a redirect takes the load elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from loadtest.config import loopback_target
from tests.loadtest.local_http import Answer, LocalServer, Request, serve
from tests.processes import ROOT


@pytest.mark.parametrize(
    ("url", "connects_to"),
    [("http://localhost:8000", "http://127.0.0.1:8000"),
     ("https://localhost", "https://127.0.0.1"),
     ("http://[::1]:8000", "http://[::1]:8000"),
     ("http://127.0.0.2:9", "http://127.0.0.2:9")],
)  # fmt: skip
def test_localhost_is_taken_as_127_0_0_1_and_literal_addresses_as_they_are(url, connects_to):
    assert loopback_target(url) == connects_to


@pytest.mark.parametrize(
    "target", ["http://127.0.0.1.nip.io:8000", "http://loopback.example", "http://192.0.2.1"]
)
def test_a_target_that_is_not_a_literal_loopback_address_is_refused(target):
    with pytest.raises(CommandError) as refused:
        call_command("loadtest", "--target", target, "--agent", "1", "--api-key", "vpk_x")
    message = str(refused.value)
    assert message.startswith(f"refusing {target}: it is not a loopback address.")
    assert "a name is not resolved" in message
    assert "--allow-remote" in message


def run_generator(target: str, tmp_path: Path, proxy: LocalServer) -> dict:
    """`manage.py loadtest` (its generator process) with every proxy variable pointing at
    `proxy`, and loopback not exempted; the JSON report."""
    report = tmp_path / "report.json"
    env = dict(os.environ)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        env[name] = proxy.url
    # Set, so the settings' default (loopback exempted) does not apply.
    env["NO_PROXY"] = env["no_proxy"] = "internal.example"
    done = subprocess.run(
        [sys.executable, "manage.py", "loadtest", "--target", target, "--agent", "1",
         "--api-key", "vpk_x", "--metrics-token", "m", "--callers", "1", "--duration", "5",
         "--no-warm-up", "--quiet", "--max-error-rate", "1", "--json", str(report)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    data: dict = json.loads(report.read_text())
    return data


def moved(to: LocalServer) -> Answer:
    return 302, {"Location": f"{to.url}/elsewhere"}, b""


def test_a_redirect_from_the_token_endpoint_is_an_error_and_not_followed(tmp_path):
    with (
        serve(lambda r: (502, {}, b"")) as proxy,
        serve(lambda r: (200, {}, b"{}")) as elsewhere,
        serve(lambda r: moved(elsewhere)) as target,
    ):
        port = target.port
        report = run_generator(f"http://localhost:{port}", tmp_path, proxy)
    assert report["target"] == f"http://127.0.0.1:{port}"  # localhost: never looked up
    assert report["errors"]["by_code"] == {"http_302": 1}  # and that caller stopped
    assert report["sessions"]["attempted"] == 1
    assert report["server"] == {
        "source": "metrics", "measured": False, "reason": "/metrics answered HTTP 302",
    }  # fmt: skip
    assert [(r.method, r.path) for r in target.requests] == [
        ("GET", "/metrics"), ("POST", "/api/v1/agents/1/tokens/"), ("GET", "/metrics"),
    ]  # fmt: skip
    assert elsewhere.requests == []
    assert proxy.requests == []


def test_a_redirect_from_the_websocket_handshake_is_an_error_and_not_followed(tmp_path):
    def platform(request: Request) -> Answer:
        if request.method == "POST":
            return 201, {"Content-Type": "application/json"}, b'{"token": "vct_x"}'
        return moved(elsewhere)

    with (
        serve(lambda r: (502, {}, b"")) as proxy,
        serve(lambda r: (200, {}, b"{}")) as elsewhere,
        serve(platform) as target,
    ):
        report = run_generator(target.url, tmp_path, proxy)
    assert report["errors"]["by_code"] == {"ws_redirect_302": 1}
    assert report["sessions"]["started"] == 0
    handshakes = [r for r in target.requests if r.path.startswith("/ws/v1/live")]
    assert len(handshakes) == 1
    assert handshakes[0].headers.get("Upgrade") == "websocket"
    assert elsewhere.requests == []
    assert proxy.requests == []
