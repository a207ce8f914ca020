"""Outbound calls of tenant webhook tools: signed, SSRF-guarded, bounded in time and size.

The request is ``POST <url>`` with a JSON body and these headers::

    X-Voice-Timestamp: <unix seconds>
    X-Voice-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
    Idempotency-Key: <64 hex characters, the same for every attempt at the same request>

The host is resolved once; if any address is private, loopback, link-local, reserved,
multicast or otherwise not global (and not inside ``TOOL_WEBHOOK_ALLOWED_NETWORKS``) the call
is refused. The connection then goes to that validated address (TLS still verifies the
hostname), so DNS cannot be re-pointed between the check and the connect. Redirects are
never followed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import urllib3
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
USER_AGENT = "voice-platform-tools/1"


class WebhookError(Exception):
    """The webhook could not produce a result (the message is safe to show the model)."""


class WebhookRefused(WebhookError):
    """The URL points at an address the platform does not call."""


class WebhookTimeout(WebhookError):
    """No complete answer within the tool's timeout."""


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


def resolve_public(host: str, port: int, *, allowed_networks: Iterable[str] | None = None) -> str:
    """Resolve ``host`` and return the address to connect to, or raise ``WebhookRefused``.

    Every resolved address must pass, not only the first: otherwise a name with one public
    and one private record could be steered to the private one.
    """
    allowed = _allowed_networks(allowed_networks)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
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
    """POST ``payload`` to ``url`` and return the JSON object it answers."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise WebhookRefused("only https:// URLs are called")
    if parts.username or parts.password:
        raise WebhookRefused("credentials in the URL are not allowed")
    host, port = parts.hostname, parts.port or 443
    limit = settings.TOOL_WEBHOOK_MAX_RESPONSE_BYTES if max_bytes is None else max_bytes
    deadline = time.monotonic() + timeout

    address = resolve_public(host, port, allowed_networks=allowed_networks)
    body = json.dumps(dict(payload), separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Host": host if parts.port is None else f"{host}:{port}",
        "X-Voice-Timestamp": timestamp,
        "X-Voice-Signature": sign(secret, timestamp, body),
    }
    if idempotency_key:
        # The same for every attempt at the same request: the endpoint can deduplicate.
        headers["Idempotency-Key"] = idempotency_key
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    # Pinned: connect to the checked address, verify the certificate against the hostname.
    pool = urllib3.HTTPSConnectionPool(
        address,
        port,
        maxsize=1,
        retries=False,
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
        ssl_context=_ssl_context(),
        server_hostname=host,
        assert_hostname=host,
    )
    try:
        response = pool.urlopen(
            "POST",
            path,
            body=body,
            headers=headers,
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            if 300 <= response.status < 400:
                raise WebhookError(f"webhook answered a redirect (HTTP {response.status})")
            if not 200 <= response.status < 300:
                raise WebhookError(f"webhook answered HTTP {response.status}")
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise WebhookError(f"webhook response larger than {limit} bytes")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.stream(16_384):
                size += len(chunk)
                if size > limit:
                    raise WebhookError(f"webhook response larger than {limit} bytes")
                if time.monotonic() > deadline:
                    raise WebhookTimeout(f"webhook did not answer within {timeout:g}s")
                chunks.append(chunk)
        finally:
            response.release_conn()
    except (TimeoutError, urllib3.exceptions.TimeoutError) as exc:
        raise WebhookTimeout(f"webhook did not answer within {timeout:g}s") from exc
    except urllib3.exceptions.SSLError as exc:
        raise WebhookError("webhook TLS verification failed") from exc
    except urllib3.exceptions.HTTPError as exc:
        raise WebhookError(f"webhook connection failed: {type(exc).__name__}") from exc
    finally:
        pool.close()
    try:
        result = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise WebhookError("webhook response is not JSON") from exc
    if not isinstance(result, dict):
        raise WebhookError("webhook response is not a JSON object")
    return result
