"""Outbound calls of tenant webhook tools: signed, SSRF-guarded, bounded in time and size.

The request is ``POST <url>`` with a JSON body and these headers::

    X-Voice-Timestamp: <unix seconds>
    X-Voice-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
    Idempotency-Key: <64 hex characters, the same for every attempt at the same request>

The host is resolved once; if any address is private, loopback, link-local, reserved,
multicast or otherwise not global (and not inside ``TOOL_WEBHOOK_ALLOWED_NETWORKS``) the call
is refused. The connection then goes to that validated address (TLS still verifies the
hostname), so DNS cannot be re-pointed between the check and the connect. Redirects are
never followed. Connect, send and the whole answer share the tool's timeout as one deadline
(``tools.deadlines``); the answer is read in chunks up to ``TOOL_WEBHOOK_MAX_RESPONSE_BYTES``.

``pinned_post`` is that connection alone, with the caller's body and headers: alert
webhooks (``analytics.webhook_post``, Standard Webhooks signatures) send through it too, so
the outbound rules live in one place.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from tools.deadlines import Deadline, socket_deadlines

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
USER_AGENT = "voice-platform-tools/1"


class WebhookError(Exception):
    """The webhook could not produce a result (the message is safe to show the model)."""


class WebhookRefused(WebhookError):
    """The URL points at an address the platform does not call."""


class WebhookTimeout(WebhookError):
    """No complete answer within the tool's timeout."""


class WebhookStatusError(WebhookError):
    """The endpoint answered, but not with a 2xx."""

    def __init__(self, status: int) -> None:
        # Redirects are never followed: a 3xx could point the call at a private address.
        what = f"a redirect (HTTP {status})" if 300 <= status < 400 else f"HTTP {status}"
        super().__init__(f"webhook answered {what}")
        self.status = status


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Voice-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: int = 300
) -> bool:
    """What a receiver does (also documented in docs/tools.md): constant-time compare and
    a freshness window against replays."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


def _allowed_networks(
    networks: Iterable[str] | None,
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    raw = settings.TOOL_WEBHOOK_ALLOWED_NETWORKS if networks is None else networks
    return [ipaddress.ip_network(item, strict=False) for item in raw]


def address_refusal(address: IPAddress, allowed: Iterable[Any]) -> str | None:
    """Why ``address`` may not be called, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in allowed):
        return None
    # Most specific first: Python counts loopback and link-local as private too.
    for label in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(address, f"is_{label}"):
            return f"{label.replace('_', '-')} address {address} is not allowed"
    if not address.is_global:
        return f"non-public address {address} is not allowed"
    return None


# getaddrinfo takes no timeout (the resolver's own is 5 s per try, several tries): lookups
# run here, and a caller waits only until its deadline. A slow lookup holds one of these
# threads until the resolver gives up, never the tool's thread.
_resolver = ThreadPoolExecutor(max_workers=8, thread_name_prefix="webhook-dns")


def resolve_public(
    host: str,
    port: int,
    *,
    allowed_networks: Iterable[str] | None = None,
    timeout: float | None = None,
) -> str:
    """Resolve ``host`` and return the address to connect to, or raise ``WebhookRefused``
    (``WebhookTimeout`` when the lookup takes longer than ``timeout`` seconds).

    Every resolved address must pass, not only the first: otherwise a name with one public
    and one private record could be steered to the private one.
    """
    allowed = _allowed_networks(allowed_networks)
    lookup = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = lookup.result(timeout=timeout)
    except FutureTimeout as exc:
        lookup.cancel()
        raise WebhookTimeout(f"webhook host {host} did not resolve within {timeout:g}s") from exc
    except socket.gaierror as exc:
        raise WebhookError(f"cannot resolve {host}") from exc
    addresses: list[str] = []
    for info in infos:
        raw = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        reason = address_refusal(ipaddress.ip_address(raw), allowed)
        if reason is not None:
            raise WebhookRefused(reason)
        if raw not in addresses:
            addresses.append(raw)
    if not addresses:
        raise WebhookError(f"cannot resolve {host}")
    return addresses[0]


def _ssl_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    if settings.TOOL_WEBHOOK_CA_FILE:
        context.load_verify_locations(cafile=settings.TOOL_WEBHOOK_CA_FILE)
    return context


def webhook_post(
    *,
    url: str,
    secret: str,
    payload: Mapping[str, Any],
    timeout: float,
    idempotency_key: str | None = None,
    max_bytes: int | None = None,
    allowed_networks: Iterable[str] | None = None,
) -> dict[str, Any]:
    """POST ``payload`` to ``url`` and return the JSON object it answers.

    Sent with ``pinned_post``: the URL and address checks, the one deadline over the whole
    call and the error mapping are its. Past the deadline: ``WebhookTimeout``.
    """
    limit = settings.TOOL_WEBHOOK_MAX_RESPONSE_BYTES if max_bytes is None else max_bytes
    body = json.dumps(dict(payload), separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Voice-Timestamp": timestamp,
        "X-Voice-Signature": sign(secret, timestamp, body),
    }
    if idempotency_key:
        # The same for every attempt at the same request: the endpoint can deduplicate.
        headers["Idempotency-Key"] = idempotency_key
    _, answer = pinned_post(
        url=url,
        body=body,
        headers=headers,
        timeout=timeout,
        max_bytes=limit,
        allowed_networks=allowed_networks,
    )
    try:
        result = json.loads(answer)
    except ValueError as exc:
        raise WebhookError("webhook response is not JSON") from exc
    if not isinstance(result, dict):
        raise WebhookError("webhook response is not a JSON object")
    return result


def pinned_post(
    *,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
    max_bytes: int | None,
    allowed_networks: Iterable[str] | None = None,
) -> tuple[int, bytes]:
    """POST ``body`` to ``url`` under this module's outbound rules; the 2xx status and the
    answer, at most ``max_bytes`` of it (``max_bytes=None``: only the status is read, the
    answer is ``b""``).

    The one path out for every webhook the platform sends (tools here, alerts in
    ``analytics.webhook_post``): callers bring the body and their signed ``headers``; the
    ``Host`` header is added from the URL. HTTPS only, no credentials in the URL, the host
    checked by ``resolve_public`` and the connection pinned to that address.

    Connect, TLS handshake, send and the whole answer share one deadline, ``timeout``
    seconds from now: socket timeouts only bound each read, so the connection is also
    armed with ``tools.deadlines`` and shut down at the deadline (a peer trickling a byte a
    second cannot hold the thread). Raises ``WebhookRefused`` (a URL or address the
    platform does not call), ``WebhookTimeout`` (past the deadline), ``WebhookStatusError``
    (a non-2xx answer, a redirect included) or ``WebhookError`` (TLS or connection failure,
    an answer larger than ``max_bytes``). Messages never contain the URL's path or query.
    """
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise WebhookRefused("only https:// URLs are called")
    if parts.username or parts.password:
        raise WebhookRefused("credentials in the URL are not allowed")
    host, port = parts.hostname, parts.port or 443
    deadline = time.monotonic() + timeout
    too_slow = f"webhook did not answer within {timeout:g}s"

    address = resolve_public(
        host, port, allowed_networks=allowed_networks, timeout=_left(deadline, too_slow)
    )
    # No credentials in netloc (refused above); it keeps an IPv6 literal's brackets.
    sent = {**headers, "Host": parts.netloc}
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"

    armed: Deadline | None = None
    fired = False
    try:
        # Pinned: connect to the checked address, verify the certificate against the hostname.
        raw = socket.create_connection((address, port), timeout=_left(deadline, too_slow))
        try:
            armed = socket_deadlines.arm(raw, deadline)
            with _ssl_context().wrap_socket(raw, server_hostname=host) as tls:
                status, answer = _exchange(tls, path, body, sent, deadline, max_bytes, too_slow)
        finally:
            raw.close()  # a no-op once ssl took it over; closes it if the handshake failed
            if armed is not None:
                fired = socket_deadlines.disarm(armed)
    except WebhookError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise WebhookError("webhook TLS verification failed") from exc
    except (OSError, http.client.HTTPException) as exc:
        # What a shutdown at the deadline looks like to the blocked call: EOF, a reset, a
        # truncated answer. ``TimeoutError`` is a single read or the connect running out.
        if fired or isinstance(exc, TimeoutError):
            raise WebhookTimeout(too_slow) from exc
        raise WebhookError(f"webhook connection failed: {type(exc).__name__}") from exc
    if fired:  # an answer cut short by the deadline may still look complete
        raise WebhookTimeout(too_slow)
    return status, answer


def _left(deadline: float, too_slow: str) -> float:
    """Seconds until ``deadline``, for the next socket operation; none left: a timeout."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise WebhookTimeout(too_slow)
    return left


def _exchange(
    tls: ssl.SSLSocket,
    path: str,
    body: bytes,
    headers: dict[str, str],
    deadline: float,
    limit: int | None,
    too_slow: str,
) -> tuple[int, bytes]:
    """Send the request on the connected socket and read a 2xx status and then (unless
    ``limit`` is None) an answer of at most ``limit`` bytes, in chunks, checking the
    deadline between them."""
    # http.client on a socket of ours (it never connects itself when ``sock`` is set):
    # the connection stays pinned and armed. Its own host is never used (the explicit Host
    # header is sent as is), so a placeholder: an IPv6 literal would be parsed for a port.
    connection = http.client.HTTPConnection("webhook.invalid")
    connection.sock = tls
    try:
        tls.settimeout(_left(deadline, too_slow))
        connection.request("POST", path, body=body, headers=headers)
        tls.settimeout(_left(deadline, too_slow))
        response = connection.getresponse()
        if not 200 <= response.status < 300:
            raise WebhookStatusError(response.status)
        if limit is None:
            return response.status, b""
        declared = response.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise WebhookError(f"webhook response larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            tls.settimeout(_left(deadline, too_slow))
            # read1: at most one read of the socket, so the deadline is checked between
            # reads (read(n) would wait for all n bytes from a trickling peer).
            chunk = response.read1(16_384)
            if not chunk:
                return response.status, b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise WebhookError(f"webhook response larger than {limit} bytes")
            chunks.append(chunk)
    finally:
        connection.close()
