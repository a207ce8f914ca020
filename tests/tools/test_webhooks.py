"""Webhook tools: signed requests to a local HTTPS receiver, and the SSRF and size guards."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time

import pytest

from tests.tools.conftest import admit_call, execute, make_webhook, verify_signature, wait_for
from tools import execution
from tools.deadlines import socket_deadlines
from tools.idempotency import tool_call_key
from tools.models import AgentTool, ToolCallRecord, WebhookTool
from tools.outcome import tool_call_response
from tools.webhooks import (
    WebhookError,
    WebhookRefused,
    WebhookTimeout,
    address_refusal,
    resolve_public,
    sign,
    verify,
    webhook_post,
)

PAYLOAD = {"call_id": "c1", "tool": "order_status", "arguments": {"order_id": "A1"}}


def post(receiver, **kwargs):
    options = {"url": receiver.url(), "secret": "s3cret", "payload": PAYLOAD, "timeout": 2.0}
    options.update(kwargs)
    return webhook_post(**options)


def test_webhook_post_is_signed_and_returns_json_object(webhook_receiver):
    webhook_receiver.handler = lambda r: (200, {}, json.dumps({"status": "shipped"}).encode())
    assert post(webhook_receiver) == {"status": "shipped"}
    request = webhook_receiver.requests[0]
    assert json.loads(request["body"]) == PAYLOAD
    assert request["headers"]["Content-Type"] == "application/json"
    assert abs(int(request["headers"]["X-Voice-Timestamp"]) - time.time()) < 5
    assert verify_signature("s3cret", request)
    assert not verify_signature("wrong-secret", request)
    assert verify("s3cret", request["headers"]["X-Voice-Timestamp"], request["body"],
                  request["headers"]["X-Voice-Signature"])  # fmt: skip


def test_webhook_verify_rejects_stale_and_tampered():
    body, now = b'{"a":1}', str(int(time.time()))
    good = sign("k", now, body)
    assert verify("k", now, body, good)
    assert not verify("k", now, b'{"a":2}', good)
    old = str(int(time.time()) - 3600)
    assert not verify("k", old, body, sign("k", old, body))


def test_webhook_loopback_refused_unless_allowlisted(webhook_receiver, settings):
    settings.TOOL_WEBHOOK_ALLOWED_NETWORKS = []
    with pytest.raises(WebhookRefused, match=r"loopback address 127\.0\.0\.1 is not allowed"):
        post(webhook_receiver)
    assert webhook_receiver.requests == []  # refused before connecting


@pytest.mark.parametrize(
    ("address", "label"),
    [
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("172.16.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 (the address under test)
        ("100.64.0.1", "non-public"),
    ],
)
def test_webhook_address_refusal_covers_non_public_ranges(address, label):
    reason = address_refusal(ipaddress.ip_address(address), [])
    assert reason is not None
    assert label in reason


def test_webhook_address_refusal_allows_public_and_allowlisted():
    assert address_refusal(ipaddress.ip_address("93.184.216.34"), []) is None
    allowed = [ipaddress.ip_network("10.0.0.0/8")]
    assert address_refusal(ipaddress.ip_address("10.9.9.9"), allowed) is None


def test_webhook_refused_if_any_resolved_address_is_private(monkeypatch):
    records = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", 443)),
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: records)
    with pytest.raises(WebhookRefused, match=r"private address 10\.0\.0\.5"):
        resolve_public("rebind.example.com", 443, allowed_networks=[])


def test_webhook_post_a_slow_name_lookup_ends_at_the_deadline(monkeypatch):
    """getaddrinfo takes no timeout; a resolver that hangs must not hold the tool's thread
    past the call's timeout (before: the whole resolver timeout, here 8 s)."""
    release = threading.Event()

    def hanging_lookup(*args, **kwargs):
        release.wait(8)
        raise socket.gaierror("resolver gave up")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
    started = time.monotonic()
    try:
        with pytest.raises(WebhookTimeout, match=r"did not resolve within"):
            webhook_post(url="https://slow-dns.example.com/hook", secret="s", payload=PAYLOAD,
                         timeout=0.5)  # fmt: skip
        assert time.monotonic() - started < 4
    finally:
        release.set()


def test_webhook_localhost_name_is_refused():
    with pytest.raises(WebhookRefused, match="loopback"):
        resolve_public("localhost", 443, allowed_networks=[])


def test_webhook_redirect_is_not_followed(webhook_receiver):
    webhook_receiver.handler = lambda r: (302, {"Location": "https://169.254.169.254/"}, b"")
    with pytest.raises(WebhookError, match="redirect"):
        post(webhook_receiver)
    assert len(webhook_receiver.requests) == 1


def test_webhook_slow_endpoint_times_out(webhook_receiver):
    def slow(request):
        time.sleep(1.5)
        return 200, {}, b"{}"

    webhook_receiver.handler = slow
    started = time.monotonic()
    with pytest.raises(WebhookTimeout, match=r"did not answer within 0\.4s"):
        post(webhook_receiver, timeout=0.4)
    assert time.monotonic() - started < 1.4


@pytest.mark.parametrize("declared", [True, False])
def test_webhook_oversized_response_is_refused(webhook_receiver, declared):
    body = json.dumps({"blob": "x" * 5000}).encode()
    headers = {} if declared else {"X-Omit-Length": "1"}
    webhook_receiver.handler = lambda r: (200, headers, body)
    with pytest.raises(WebhookError, match="larger than 1024 bytes"):
        post(webhook_receiver, max_bytes=1024)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, b"{}", "HTTP 500"),
        (200, b"not json", "not JSON"),
        (200, b"[1, 2]", "not a JSON object"),
    ],
)
def test_webhook_bad_answers_are_errors(webhook_receiver, status, body, message):
    webhook_receiver.handler = lambda r: (status, {}, body)
    with pytest.raises(WebhookError, match=message):
        post(webhook_receiver)


def test_webhook_untrusted_certificate_is_refused(webhook_receiver, settings):
    settings.TOOL_WEBHOOK_CA_FILE = ""
    with pytest.raises(WebhookError, match="TLS verification failed"):
        post(webhook_receiver)


def test_webhook_plain_http_is_refused():
    with pytest.raises(WebhookRefused, match="https"):
        webhook_post(url="http://example.com/", secret="s", payload={}, timeout=1)


def admit_webhook_call(alice, session, receiver, *, call_id="call-7", turn=0, **fields):
    webhook = make_webhook(alice.tenant, url=receiver.url("/orders"), **fields)
    AgentTool.unscoped.create(tenant=alice.tenant, agent=session.agent, webhook_tool=webhook)
    return admit_call(session, "order_status", {"order_id": "A1"}, call_id=call_id, turn=turn)


@pytest.mark.django_db(transaction=True)
def test_webhook_tool_executes_through_service(
    alice, alice_agent, alice_session, webhook_receiver, tool_threads
):
    webhook_receiver.handler = lambda r: (200, {}, b'{"status": "shipped"}')
    admission = admit_webhook_call(alice, alice_session, webhook_receiver)
    execute(admission.record)
    record = ToolCallRecord.unscoped.get(pk=admission.record.pk)
    assert record.status == "succeeded"
    assert tool_call_response(record=record) == {"status": "shipped"}
    (request,) = webhook_receiver.requests
    assert request["path"] == "/orders"
    assert verify_signature("s3cret", request)
    assert json.loads(request["body"]) == {
        "call_id": "call-7",
        "tool": "order_status",
        "arguments": {"order_id": "A1"},
        "agent_id": alice_agent.pk,
        "session_id": str(alice_session.pk),
        "end_user_id": alice_session.end_user_id,
        # Signed with the body: a replayed request cannot carry another key.
        "idempotency_key": record.idempotency_key,
    }
    assert request["headers"]["Idempotency-Key"] == record.idempotency_key


@pytest.mark.django_db(transaction=True)
def test_webhook_tool_sends_the_calls_idempotency_key(
    alice, alice_agent, alice_session, webhook_receiver, tool_threads
):
    admission = admit_webhook_call(alice, alice_session, webhook_receiver, turn=5)
    execute(admission.record)
    record = ToolCallRecord.unscoped.get(pk=admission.record.pk)
    (request,) = webhook_receiver.requests
    assert request["headers"]["Idempotency-Key"] == record.idempotency_key
    # What the user asked (session, turn, tool, arguments), not the model's call id.
    expected = tool_call_key(
        session_ref=str(alice_session.pk), turn=5, name="order_status",
        args={"order_id": "A1"}, occurrence=0,
    )  # fmt: skip
    assert record.idempotency_key == expected


@pytest.mark.django_db(transaction=True)
def test_webhook_tool_a_second_request_sends_another_key(
    alice, alice_agent, alice_session, webhook_receiver, tool_threads
):
    first = admit_webhook_call(alice, alice_session, webhook_receiver)
    second = admit_call(
        alice_session, "order_status", {"order_id": "A1"}, call_id="call-8", occurrence=1
    )
    execute(first.record)
    execute(second.record)
    keys = [request["headers"]["Idempotency-Key"] for request in webhook_receiver.requests]
    assert sorted(keys) == sorted(ToolCallRecord.unscoped.values_list("idempotency_key", flat=True))
    assert len(set(keys)) == 2


def test_webhook_post_every_attempt_at_a_request_carries_its_key(webhook_receiver):
    request_key = "ab" * 32
    post(webhook_receiver, idempotency_key=request_key)
    post(webhook_receiver, idempotency_key=request_key)  # a retry of the same request
    post(webhook_receiver)  # a caller without a key sends none
    headers = [request["headers"] for request in webhook_receiver.requests]
    assert [h.get("Idempotency-Key") for h in headers] == [request_key, request_key, None]
    assert all(verify_signature("s3cret", r) for r in webhook_receiver.requests)


@pytest.mark.django_db(transaction=True)
def test_webhook_tool_timeout_marks_record_timeout(
    alice, alice_agent, alice_session, webhook_receiver, tool_threads
):
    def slow(request):
        time.sleep(1.2)
        return 200, {}, b"{}"

    webhook_receiver.handler = slow
    admission = admit_webhook_call(alice, alice_session, webhook_receiver, timeout_seconds=0.3)
    execute(admission.record)
    record = ToolCallRecord.unscoped.get(pk=admission.record.pk)
    assert record.status == "timeout"
    assert tool_call_response(record=record) == {"error": "tool timed out after 0.3s"}


@pytest.mark.django_db(transaction=True)
def test_webhook_tool_refused_address_fails_the_call(
    alice, alice_agent, alice_session, webhook_receiver, settings, tool_threads
):
    settings.TOOL_WEBHOOK_ALLOWED_NETWORKS = []
    admission = admit_webhook_call(alice, alice_session, webhook_receiver)
    execute(admission.record)
    record = ToolCallRecord.unscoped.get(pk=admission.record.pk)
    assert record.status == "failed"
    assert record.error == "WebhookRefused: loopback address 127.0.0.1 is not allowed"
    assert webhook_receiver.requests == []


@pytest.mark.django_db(transaction=True)
def test_webhook_tool_disabled_after_admission_is_not_called(
    alice, alice_agent, alice_session, webhook_receiver, tool_threads
):
    admission = admit_webhook_call(alice, alice_session, webhook_receiver)
    WebhookTool.unscoped.update(enabled=False)  # behind the signals' back
    execute(admission.record)
    record = ToolCallRecord.unscoped.get(pk=admission.record.pk)
    assert record.status == "failed"
    assert record.error == "LookupError: webhook tool 'order_status' is disabled"
    assert webhook_receiver.requests == []


# A peer that answers a byte every 0.5 s against a 1.5 s timeout (the case scaled
# down: 1 byte/s against 3 s). Before the fix a socket timeout bounded each read only, so
# every byte reset it: the call took the whole answer's time (15 s for the body, 45 s for
# the head) however short the tool's timeout.
TRICKLE_TIMEOUT = 1.5
TRICKLE_INTERVAL = 0.5


@pytest.mark.parametrize("trickle", ["headers", "body"])
def test_webhook_post_a_trickling_peer_ends_at_the_deadline(slow_server, trickle):
    slow_server.trickle, slow_server.interval = trickle, TRICKLE_INTERVAL
    started = time.monotonic()
    with pytest.raises(WebhookTimeout, match=r"did not answer within 1\.5s"):
        webhook_post(url=slow_server.url(), secret="s", payload=PAYLOAD, timeout=TRICKLE_TIMEOUT)
    returned = time.monotonic()
    assert returned - started < TRICKLE_TIMEOUT + 2  # not after the whole answer (15-45 s)
    # The connection was really closed, not left to a reader: the server's next writes fail.
    assert slow_server.gone.wait(5)
    assert slow_server.client_gone_at is not None
    assert slow_server.client_gone_at - returned < 4
    assert socket_deadlines.pending() == 0  # nothing armed is left behind


@pytest.mark.django_db(transaction=True)
def test_webhook_tool_a_trickling_peer_frees_the_tool_thread_at_the_timeout(
    alice, alice_agent, alice_session, slow_server, tool_threads, settings
):
    settings.TOOL_THREADS = 1  # one thread: if the webhook kept it, nothing else could run
    slow_server.interval = TRICKLE_INTERVAL
    admission = admit_webhook_call(
        alice, alice_session, slow_server, timeout_seconds=TRICKLE_TIMEOUT
    )
    started = time.monotonic()
    done = execute(admission.record)
    assert done.status == "timeout"
    assert time.monotonic() - started < TRICKLE_TIMEOUT + 2
    # The tool thread stops reading soon after the deadline: the server sees the connection
    # closed and the tenant's slot in the pool is free again (before: held for ~30 s).
    assert slow_server.gone.wait(5)
    wait_for(lambda: execution.tool_pool().in_pool(alice.tenant.pk) == 0, timeout=5)
    record = ToolCallRecord.unscoped.get(pk=admission.record.pk)
    assert record.status == "timeout"  # final: the audit trigger keeps it so
    assert record.finished_at is not None
    assert record.pending_arguments == ""
    assert tool_call_response(record=record) == {"error": "tool timed out after 1.5s"}
