"""Fixtures for tools: sessions, allowlist entries, a local HTTPS webhook receiver and a
real Celery worker (``celery_worker_process``, reusable by the bridge's end-to-end tests)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from agents.models import Agent
from conftest import require_postgres, require_redis
from sessions.models import VoiceSession
from tests.processes import database_url
from tools import execution
from tools.admission import Admission, ToolCallRequest, tool_call_admit, tool_call_enqueue
from tools.allowlist import ToolAllowlist, tool_allowlist_for_agent
from tools.execution import tool_call_execute
from tools.models import AgentTool, OutboxEmail, Tool, ToolCallRecord, WebhookTool
from tools.registry import ToolContext, registry, tool, unregister
from tools.services import tool_sync_registry
from voice_platform.crypto import encrypt_str
from voice_platform.live_emulator.certs import ensure_cert, server_ssl_context
from voice_platform.tenancy.scope import tenant_scope

ROOT = Path(__file__).resolve().parents[2]
TEST_SECRET = "s3cret"


def make_session(agent: Any, end_user_id: str = "user-1") -> VoiceSession:
    # unscoped factory-style creation: fixtures build data outside any scope.
    session = VoiceSession(tenant_id=agent.tenant_id, agent=agent, end_user_id=end_user_id)
    session.save()
    return session


def call_request(
    session: Any,
    name: str,
    args: dict[str, Any],
    *,
    call_id: str = "c1",
    turn: int = 0,
    occurrence: int = 0,
) -> ToolCallRequest:
    """The request a live session makes for one function call of the model."""
    return ToolCallRequest(
        tenant_id=session.tenant_id, session_id=session.pk, end_user_id=session.end_user_id,
        call_id=call_id, name=name, args=args, turn=turn, occurrence=occurrence,
    )  # fmt: skip


def admit_call(
    session: Any,
    name: str,
    args: dict[str, Any],
    *,
    call_id: str = "c1",
    turn: int = 0,
    occurrence: int = 0,
    dispatch: bool = False,
    allowlist: ToolAllowlist | None = None,
) -> Admission:
    """Admit a call in the session's tenant scope, against the agent's allowlist as it is now
    (or ``allowlist``, a session's copy). Without ``dispatch`` no Celery task is sent."""
    request = call_request(session, name, args, call_id=call_id, turn=turn, occurrence=occurrence)
    with tenant_scope(session.tenant_id):
        if allowlist is None:
            agent = Agent.objects.get(pk=session.agent_id)
            allowlist = tool_allowlist_for_agent(agent=agent)
        return tool_call_admit(
            request=request, allowlist=allowlist, dispatch=tool_call_enqueue if dispatch else None
        )


def start_call(session: Any, agent: Any, call_id: str, name: str, args: dict[str, Any]) -> Any:
    """Admit a call and claim it (``queued -> running``, as its tool thread does), without
    running the tool: a call caught mid-run."""
    admission = admit_call(session, name, args, call_id=call_id)
    assert admission.record.status == "queued", admission.record.rejection_reason
    with tenant_scope(agent.tenant_id):
        claimed = ToolCallRecord.objects.filter(pk=admission.record.pk, status="queued").update(
            status="running", started_at=timezone.now()
        )
        assert claimed == 1
        return ToolCallRecord.objects.get(pk=admission.record.pk)


def execute(record: Any, **kwargs: Any) -> ToolCallRecord:
    """Run an admitted call as its worker does (again: as a redelivery does)."""
    with tenant_scope(record.tenant_id):
        return tool_call_execute(record_id=record.pk, **kwargs)


def allow(agent: Any, tool_name: str, **fields: Any) -> AgentTool:
    """Allowlist a registry tool on ``agent`` (the Tool rows exist: synced on migrate)."""
    tool = Tool.objects.get(name=tool_name)
    entry = AgentTool(tenant_id=agent.tenant_id, agent=agent, tool=tool, **fields)
    entry.save()
    return entry


def make_webhook(
    tenant: Any,
    *,
    url: str,
    secret: str = TEST_SECRET,
    **fields: Any,
) -> WebhookTool:
    defaults: dict[str, Any] = {
        "name": "order_status",
        "description": "Status of an order.",
        "parameters_schema": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "minLength": 1}},
            "required": ["order_id"],
        },
    }
    defaults.update(fields)
    webhook = WebhookTool(tenant=tenant, url=url, secret_encrypted=encrypt_str(secret), **defaults)
    webhook.save()
    return webhook


@pytest.fixture
def synced_tools(db: None) -> None:
    """Transactional tests flush tables; post_migrate re-syncs, this makes it explicit."""
    tool_sync_registry()


@pytest.fixture
def alice_session(alice_agent: Any) -> VoiceSession:
    return make_session(alice_agent)


@dataclass
class ToolThreads:
    """This test's pool of tool threads (``tools.execution.tool_pool``)."""

    def join(self) -> None:
        """Wait for every tool thread: an overrunning tool's too (its late writes)."""
        with execution._pool_lock:
            pool, execution._pool = execution._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


@pytest.fixture
def tool_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[ToolThreads]:
    """A pool of tool threads of this test's own, built by the real ``tool_pool()`` on first
    use (with ``TOOL_THREADS`` as the test sets it) and joined at the end: a tool still
    running must not outlive the test's data."""
    monkeypatch.setattr(execution, "_pool", None)
    threads = ToolThreads()
    try:
        yield threads
    finally:
        threads.join()


@dataclass
class ScratchTools:
    """What the scratch tools saw: ``runs`` lists each run's tool (and label)."""

    release: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    runs: list[str] = field(default_factory=list)


@pytest.fixture
def scratch_tools(db: None) -> Iterator[ScratchTools]:
    """Test-only tools; the Tool table is re-synced so they can be allowlisted."""
    before = set(registry())
    seen = ScratchTools()

    @tool(name="t_boom", description="Raises.")
    def boom(ctx: ToolContext) -> dict[str, Any]:
        raise RuntimeError("disk on fire")

    @tool(name="t_not_a_dict", description="Returns a list.")
    def not_a_dict(ctx: ToolContext) -> dict[str, Any]:
        return [1, 2]  # type: ignore[return-value]

    @tool(name="t_slow_mail", description="Sleeps, then writes.", timeout=0.3)
    def slow_mail(ctx: ToolContext, seconds: float) -> dict[str, Any]:
        seen.runs.append("t_slow_mail")
        time.sleep(seconds)
        OutboxEmail.objects.create(tenant=ctx.tenant, to="x@example.com", subject="s", body="b")
        seen.finished.set()
        return {"slept": seconds}

    @tool(name="t_gated_mail", description="Waits for the test, then writes.", timeout=5)
    def gated_mail(ctx: ToolContext) -> dict[str, Any]:
        seen.started.set()
        seen.release.wait(5)
        OutboxEmail.objects.create(tenant=ctx.tenant, to="x@example.com", subject="s", body="b")
        return {"done": True}

    @tool(name="t_note", description="Records that it ran.", timeout=0.3, rate_limit="1000/min")
    def note(ctx: ToolContext, label: str) -> dict[str, Any]:
        seen.runs.append(label)
        return {"noted": label}

    @tool(name="t_background", description="Non-blocking.", behavior="NON_BLOCKING",
          scheduling="INTERRUPT")  # fmt: skip
    def background(ctx: ToolContext) -> dict[str, Any]:
        return {"ok": True}

    tool_sync_registry()
    try:
        yield seen
    finally:
        for name in set(registry()) - before:
            unregister(name)


@dataclass
class WebhookReceiver:
    """A local HTTPS endpoint. ``handler`` decides each answer; requests are recorded."""

    base_url: str
    cert_path: Path
    requests: list[dict[str, Any]] = field(default_factory=list)
    handler: Callable[[dict[str, Any]], tuple[int, dict[str, str], bytes]] | None = None

    def url(self, path: str = "/hook") -> str:
        return f"{self.base_url}{path}"


def _json_answer(body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def verify_signature(secret: str, request: dict[str, Any]) -> bool:
    """The receiver side of the scheme documented in docs/tools.md."""
    timestamp = request["headers"]["X-Voice-Timestamp"]
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + request["body"], hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(f"sha256={expected}", request["headers"]["X-Voice-Signature"])


@contextlib.contextmanager
def serve_https(
    handler: type[BaseHTTPRequestHandler], cert_path: Path, key_path: Path, settings: Any
) -> Iterator[str]:
    """A threading HTTPS server on loopback, trusted and allowlisted for webhook tools while
    it runs; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.socket = server_ssl_context(cert_path, key_path).wrap_socket(
        server.socket, server_side=True
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    settings.TOOL_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.TOOL_WEBHOOK_CA_FILE = str(cert_path)
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def webhook_receiver(
    tmp_path_factory: pytest.TempPathFactory, settings: Any
) -> Iterator[WebhookReceiver]:
    cert_path, key_path = ensure_cert(tmp_path_factory.mktemp("webhook-cert"))
    receiver_ref: list[WebhookReceiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            request = {
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body": self.rfile.read(length),
            }
            receiver = receiver_ref[0]
            receiver.requests.append(request)
            handler = receiver.handler or (lambda r: _json_answer({"ok": True}))
            status, headers, body = handler(request)
            headers = dict(headers)
            try:
                self.send_response(status)
                omit_length = headers.pop("X-Omit-Length", None) is not None
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in headers and not omit_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass  # the client gave up (timeout, size cap): expected in those tests

        def log_message(self, format: str, *args: Any) -> None:
            return

    with serve_https(Handler, cert_path, key_path, settings) as base_url:
        receiver_ref.append(WebhookReceiver(base_url=base_url, cert_path=cert_path))
        yield receiver_ref[0]


@dataclass
class CeleryWorker:
    process: subprocess.Popen[bytes]
    queue: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it hangs."""
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def start_celery_worker(
    *, queue: str, redis_url: str, log_path: Path, env: dict[str, str] | None = None
) -> CeleryWorker:
    """Start a real Celery worker (its own process) on ``queue`` and wait until it is ready.
    ``env`` adds variables (e.g. a short ``CELERY_VISIBILITY_TIMEOUT``)."""
    full_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "voice_platform.settings.test",
        "DATABASE_URL": database_url(),  # the test database, shared with this process
        "REDIS_URL": redis_url,
        "TOOL_CELERY_QUEUE": queue,
        "TOOL_WEBHOOK_ALLOWED_NETWORKS": ",".join(settings.TOOL_WEBHOOK_ALLOWED_NETWORKS),
        "TOOL_WEBHOOK_CA_FILE": settings.TOOL_WEBHOOK_CA_FILE,
        **(env or {}),
    }
    with log_path.open("w") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "voice_platform", "worker",
                # Threads: several calls of one toolCall run in parallel, as in production.
                "-Q", queue, "-P", "threads", "--concurrency", "4", "-l", "info",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "-n", f"{queue}-{uuid.uuid4().hex[:4]}@%h",
            ],
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    worker = CeleryWorker(process=process, queue=queue, log_path=log_path)
    deadline = time.monotonic() + 30
    while "ready." not in worker.log():
        if process.poll() is not None or time.monotonic() > deadline:
            worker.stop()
            pytest.fail(f"celery worker did not start:\n{worker.log()}")
        time.sleep(0.1)
    return worker


def use_test_queue(test_settings: Any) -> tuple[str, str]:
    """A tool queue of this test's own on the real Redis, as ``TOOL_CELERY_QUEUE``:
    admission in this process sends there and no other worker on the same Redis takes the
    task. Needs PostgreSQL and Redis (skips locally without them, fails in CI). Returns
    ``(queue, redis_url)``."""
    require_postgres()
    redis_url = require_redis()
    queue = f"live_tools_test_{uuid.uuid4().hex[:8]}"
    test_settings.TOOL_CELERY_QUEUE = queue
    test_settings.TOOL_EXECUTION = "celery"
    return queue, redis_url


@pytest.fixture
def celery_worker_process(
    transactional_db: None, settings: Any, tmp_path: Path
) -> Iterator[CeleryWorker]:
    """A real Celery worker on a queue of its own, sharing this test's database and Redis
    (``use_test_queue``)."""
    queue, redis_url = use_test_queue(settings)
    worker = start_celery_worker(
        queue=queue, redis_url=redis_url, log_path=tmp_path / "celery-worker.log"
    )
    try:
        yield worker
    finally:
        worker.stop()


@dataclass
class SlowServer:
    """A local HTTPS endpoint that answers one byte per ``interval`` seconds, in its status
    line and headers (``trickle="headers"``) or in its body (``"body"``)."""

    base_url: str
    trickle: str = "body"
    interval: float = 1.0
    size: int = 30  # bytes of the body (a JSON object)
    # When the server noticed the client had gone (a write failed), time.monotonic().
    client_gone_at: float | None = None
    gone: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "/slow") -> str:
        return f"{self.base_url}{path}"

    def answer(self) -> tuple[bytes, bytes]:
        body = b'{"x":"' + b"y" * max(0, self.size - 8) + b'"}'
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        head += b"Content-Length: %d\r\n\r\n" % len(body)
        return head, body


@pytest.fixture
def slow_server(tmp_path_factory: pytest.TempPathFactory, settings: Any) -> Iterator[SlowServer]:
    """A real slow peer (threading ``http.server``, TLS), trusted and allowlisted."""
    cert_path, key_path = ensure_cert(tmp_path_factory.mktemp("slow-cert"))
    ref: list[SlowServer] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            server = ref[0]
            head, body = server.answer()
            if server.trickle == "headers":
                slow, fast = head + body, b""
            else:
                self.wfile.write(head)
                self.wfile.flush()
                slow, fast = body, b""
            try:
                for index in range(len(slow)):
                    self.wfile.write(slow[index : index + 1])
                    self.wfile.flush()
                    time.sleep(server.interval)
                self.wfile.write(fast)
            except (OSError, ssl.SSLError):
                server.client_gone_at = time.monotonic()
                server.gone.set()
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            return

    with serve_https(Handler, cert_path, key_path, settings) as base_url:
        ref.append(SlowServer(base_url=base_url))
        yield ref[0]


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
