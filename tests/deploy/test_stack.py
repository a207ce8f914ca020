"""The deployment serves a call: the compose stack brought up and used through its balancer.

With a container engine (``docker info`` works) this is ``docker compose up -d --build``;
without one (CI, this machine) the same services run as processes, driven by the compose
file (tests/deploy/compose_stack.py): the emulator, the one-shot init (secret key,
migrations, bootstrap), two Daphne web processes under production settings with DEBUG off,
a Celery worker, and HAProxy with deploy/haproxy.cfg. Everything below goes through the
balancer: readiness, the admin's CSS, a client token minted with the API key that bootstrap
printed, and a call over /ws/v1/live with a typed turn, a tool call run by the worker, and
``close``; two sessions at once land on the two web processes.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import websockets
from channels.db import database_sync_to_async

from conftest import require_postgres
from sessions.models import VoiceSession
from tests.deploy.compose_stack import COMPOSE_FILE, LocalStack, docker_engine_available
from tests.processes import ROOT, until
from voice_platform.live_emulator.certs import covered_names

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.django_db(transaction=True)]

METRICS_TOKEN = "stack-test-metrics-token"


@dataclass
class Deployment:
    url: str  # HAProxy's
    api_key: str  # from bootstrap's output
    local: LocalStack | None  # None: the compose engine's stack
    web_urls: dict[str, str]  # each web process directly, for its /metrics

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)


def api_key_written(output: str, read: Callable[[str], str]) -> str:
    """The API key init wrote to its first-login file (never to its output: logs are kept)."""
    match = re.search(r"are in (\S+first-login\.json)", output)
    assert match, f"init named no first-login file:\n{output}"
    assert "vpk_" not in output  # the key is not in the logs
    return str(json.loads(read(match.group(1)))["api_key"])


@pytest.fixture
def deployment(tmp_path) -> Iterator[Deployment]:
    if docker_engine_available():
        yield from compose_deployment()
        return
    require_postgres()  # the processes share the test's PostgreSQL database
    stack = LocalStack(tmp_path, extra_env={"METRICS_TOKEN": METRICS_TOKEN})
    try:
        stack.start()
        yield Deployment(
            url=stack.url,
            api_key=api_key_written(stack.init_output, lambda path: Path(path).read_text()),
            local=stack,
            web_urls={n: f"http://127.0.0.1:{stack.ports[n]}" for n in ("web1", "web2")},
        )
    except BaseException:
        print(f"start-up steps (s): {stack.timings}")
        for name in stack.procs:
            print(f"--- {name}.log ---\n{stack.log(name)[-4000:]}")
        raise
    finally:
        print(f"start-up steps (s): {stack.timings}")
        stack.stop()


def compose_deployment() -> Iterator[Deployment]:  # pragma: no cover - needs an engine
    """`docker compose up` of the real file, in a project of its own, removed afterwards."""
    project = f"voice-stack-test-{uuid.uuid4().hex[:8]}"
    base = ["docker", "compose", "-p", project, "-f", str(COMPOSE_FILE)]
    env_file = ROOT / ".env"
    created = not env_file.exists()
    if created:
        env_file.write_text(
            (ROOT / ".env.example").read_text() + f"METRICS_TOKEN={METRICS_TOKEN}\n"
        )
    try:
        # Not `--wait`: it can fail on a one-shot service that exited 0 (docker/compose#10596).
        subprocess.run([*base, "up", "-d", "--build"], cwd=ROOT, check=True, timeout=900)
        wait_for(lambda: responds("http://127.0.0.1:8000/lb-health"), timeout=300)
        ping = ["celery", "-A", "voice_platform", "inspect", "ping", "--timeout", "5"]
        worker = [*base, "exec", "-T", "worker", *ping]
        wait_for(lambda: subprocess.run(worker, cwd=ROOT, check=False).returncode == 0, timeout=120)
        logs = subprocess.run(
            [*base, "logs", "--no-log-prefix", "init"], cwd=ROOT, capture_output=True, text=True,
            check=True,
        )  # fmt: skip

        def read(path: str) -> str:
            cat = [*base, "exec", "-T", "web1", "cat", path]
            return subprocess.run(cat, cwd=ROOT, capture_output=True, text=True, check=True).stdout

        yield Deployment(
            url="http://127.0.0.1:8000", api_key=api_key_written(logs.stdout, read), local=None,
            web_urls={},
        )  # fmt: skip
    finally:
        subprocess.run([*base, "down", "-v"], cwd=ROOT, check=False, timeout=300)
        if created:
            env_file.unlink()


def responds(url: str) -> bool:  # pragma: no cover - the compose branch
    try:
        return requests.get(url, timeout=5).ok
    except requests.RequestException:
        return False


def wait_for(check: Callable[[], bool], *, timeout: float) -> None:  # pragma: no cover
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the compose stack did not come up"
        time.sleep(2)


async def get(url: str, **kwargs: Any) -> requests.Response:
    return await asyncio.to_thread(requests.get, url, timeout=15, **kwargs)


async def rest(deployment: Deployment, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {deployment.api_key}"}
    return await asyncio.to_thread(
        requests.request, method, deployment.url + path, headers=headers, timeout=15, **kwargs
    )


async def active_sessions(url: str) -> float:
    """voice_sessions_active of one web process (each has its own /metrics)."""
    text = (await get(f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})).text
    match = re.search(r"^voice_sessions_active(?:\{[^}]*\})? (\S+)$", text, re.M)
    assert match, text[:2000]
    return float(match.group(1))


async def test_the_stack_serves_a_call_through_the_balancer(deployment):
    # What a user (and the compose healthchecks) see first.
    ready = await get(f"{deployment.url}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ok", ready.text
    login = await get(f"{deployment.url}/admin/login/")
    assert login.status_code == 200
    css_path = re.search(r'href="(/static/admin/css/base\.css)"', login.text)
    assert css_path, login.text[:2000]
    css = await get(deployment.url + css_path.group(1))
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert b"body" in css.content

    if deployment.local is not None:
        # The emulator was started with the compose file's --cert-name: the certificate
        # covers the host name the app services dial.
        certs = deployment.local.mount_dir("/certs") / "cert.pem"
        assert {"emulator", "localhost", "127.0.0.1"} <= covered_names(certs)
        assert "already bootstrapped" not in deployment.local.init_output

    # REST with the key bootstrap printed: an agent, a tool, client tokens.
    agent = await rest(
        deployment, "POST", "/api/v1/agents/",
        json={"name": "Stack test", "slug": f"stack-{uuid.uuid4().hex[:6]}",
              "model": "gemini-3.1-flash-live-preview", "response_modality": "TEXT"},
    )  # fmt: skip
    assert agent.status_code == 201, agent.text
    agent_id = agent.json()["id"]
    tool = await rest(
        deployment, "POST", f"/api/v1/agents/{agent_id}/tools/", json={"tool": "get_current_time"}
    )
    assert tool.status_code == 201, tool.text
    tokens = []
    for user in ("caller-1", "caller-2"):
        issued = await rest(
            deployment, "POST", f"/api/v1/agents/{agent_id}/tokens/", json={"user_id": user}
        )
        assert issued.status_code == 201, issued.text
        tokens.append(issued.json()["token"])

    url = f"{deployment.ws_url}/ws/v1/live?token="
    async with (
        websockets.connect(url + tokens[0]) as call,
        websockets.connect(url + tokens[1]) as other,
    ):
        started = await until(call, "session.started")
        await until(other, "session.started")
        # leastconn: the second session went to the process without one.
        if deployment.web_urls:
            counts = [await active_sessions(u) for u in deployment.web_urls.values()]
            assert counts == [1, 1], counts

        await call.send(json.dumps({"type": "text", "text": "hello through the balancer"}))
        reply = []
        async with asyncio.timeout(20):
            while (event := json.loads(await call.recv()))["type"] != "turn_complete":
                if event["type"] == "text":
                    reply.append(event["text"])
        assert "".join(reply) == "You said: hello through the balancer"

        await call.send(
            json.dumps({"type": "text", "text": 'call get_current_time {"timezone": "UTC"}'})
        )
        tool_started = await until(call, "tool.started", timeout=20)
        finished = await until(call, "tool.finished", timeout=20)
        assert (finished["call_id"], finished["status"]) == (tool_started["call_id"], "ok")
        await until(call, "turn_complete", timeout=20)

        await call.send(json.dumps({"type": "close"}))
        ended = await until(call, "session.ended")
        assert ended["reason"] == "client_closed"
        await other.send(json.dumps({"type": "close"}))
        await until(other, "session.ended")

    # The session's row, through the API (both branches) and the database (processes).
    session_id = started["session_id"]
    detail = await rest(deployment, "GET", f"/api/v1/sessions/{session_id}/")
    assert detail.status_code == 200, detail.text
    assert (detail.json()["status"], detail.json()["end_reason"]) == ("ended", "client_closed")
    calls = await rest(deployment, "GET", "/api/v1/tool-calls/?tool=get_current_time")
    (record,) = calls.json()["results"]
    assert record["status"] == "succeeded", record
    assert record["session"] == session_id
    assert record["celery_task_id"], record  # queued to Celery: the worker ran it
    if deployment.local is not None:
        row = await database_sync_to_async(VoiceSession.unscoped.get)(pk=session_id)
        assert (row.status, row.end_reason) == ("ended", "client_closed")
        assert row.ended_at is not None
        worker_log = deployment.local.log("worker")
        assert re.search(r"Task tools\.tasks\.\S+ succeeded", worker_log), worker_log[-3000:]
