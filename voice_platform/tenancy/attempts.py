"""Failed credential attempts per client address: API keys, client tokens, resume tokens.

An address that fails ``AUTH_FAILURE_LIMIT`` times within ``AUTH_FAILURE_WINDOW`` seconds is
blocked for the next ``AUTH_FAILURE_WINDOW`` seconds: every attempt from it is refused, even
one with a valid credential, so guessing gains nothing. Successful attempts do not count.

The counters live in Django's cache (Redis in production). When the cache cannot be
reached, nothing is counted and nobody is blocked (fail open, with a warning): a Redis
outage must neither lock every client out nor turn authentication into a 500.

The client address is the peer of the connection (``REMOTE_ADDR``, the ASGI scope's
``client``); ``X-Forwarded-For`` is believed only from a peer in ``TRUSTED_PROXIES``.
IPv6 clients are counted per /64, the block a single subscriber usually gets.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from django.conf import settings
from django.core.cache import cache

from voice_platform.outages import outage_of

log = logging.getLogger(__name__)

UNKNOWN_ADDRESS = "unknown"
_COUNT_KEY = "auth-failures:count:{}"
_BLOCK_KEY = "auth-failures:blocked:{}"
# One warning per this many seconds while the cache is down, not one per request.
_WARN_EVERY = 60.0
_last_warning = 0.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class _HasMeta(Protocol):
    @property
    def META(self) -> Mapping[str, Any]: ...


def _parse(raw: str | None) -> IPAddress | None:
    try:
        return ipaddress.ip_address((raw or "").strip())
    except ValueError:
        return None


def _normalise(address: IPAddress | None) -> str:
    if address is None:
        return UNKNOWN_ADDRESS
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        # A subscriber usually holds a whole /64: counting single addresses would let one
        # client rotate through 2**64 of them.
        return str(ipaddress.IPv6Network((address, 64), strict=False).network_address)
    return str(address)


def _trusted(address: IPAddress, proxies: Iterable[str]) -> bool:
    return any(address in ipaddress.ip_network(cidr, strict=False) for cidr in proxies)


def client_address(*, peer: str | None, forwarded_for: str | None) -> str:
    """The address attempts are counted under (IPv6: its /64), or ``"unknown"``.

    ``forwarded_for`` (``X-Forwarded-For``, hops comma-separated, nearest last) is read only
    when the peer is a trusted proxy; then the nearest hop that is not a trusted proxy is the
    client. Hops further left are whatever the client sent and are never believed.
    """
    proxies = settings.TRUSTED_PROXIES
    address = _parse(peer)
    if address is None or not proxies or not _trusted(address, proxies):
        return _normalise(address)
    for hop in reversed([h for h in (forwarded_for or "").split(",") if h.strip()]):
        address = _parse(hop)
        if address is None or not _trusted(address, proxies):
            break
    return _normalise(address)


def request_client_address(request: _HasMeta) -> str:
    """The client address of an HTTP request."""
    return client_address(
        peer=request.META.get("REMOTE_ADDR"), forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR")
    )


def axes_client_address(request: _HasMeta) -> str | None:
    """``AXES_CLIENT_IP_CALLABLE``: the same address for admin logins, None when unknown
    (axes stores it in an IP address column)."""
    address = request_client_address(request)
    return None if address == UNKNOWN_ADDRESS else address


def scope_client_address(scope: Mapping[str, Any]) -> str:
    """The client address of an ASGI connection (a WebSocket's scope)."""
    client = scope.get("client")
    peer = str(client[0]) if client else None
    forwarded = b",".join(
        value for name, value in scope.get("headers", []) if name.lower() == b"x-forwarded-for"
    )
    return client_address(peer=peer, forwarded_for=forwarded.decode("latin-1"))


def _cache_down(exc: Exception) -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= _WARN_EVERY:
        _last_warning = now
        log.warning("failed credential attempts are not counted: the cache is unreachable: %r", exc)


def auth_failure_retry_after(*, address: str) -> int | None:
    """Seconds until a blocked address may try again; None when it is not blocked."""
    try:
        until = cache.get(_BLOCK_KEY.format(address))
    except Exception as exc:
        if outage_of(exc) is None:
            raise
        _cache_down(exc)  # fail open: see the module docstring
        return None
    if until is None:
        return None
    remaining = math.ceil(float(until) - time.time())
    return remaining if remaining > 0 else None


def auth_failure_record(*, address: str) -> None:
    """Count one failed attempt; the one that reaches the limit blocks the address."""
    window = settings.AUTH_FAILURE_WINDOW
    key = _COUNT_KEY.format(address)
    try:
        # add() is a no-op on an existing key, so the window starts at the first failure and
        # incr() (atomic in Redis) keeps its expiry.
        cache.add(key, 0, timeout=window)
        try:
            failures = cache.incr(key)
        except ValueError:  # the window expired between add() and incr()
            cache.set(key, 1, timeout=window)
            failures = 1
        if failures >= settings.AUTH_FAILURE_LIMIT:
            cache.set(_BLOCK_KEY.format(address), time.time() + window, timeout=window)
            cache.delete(key)
            log.warning(
                "address %s blocked for %d s after %d failed attempts", address, window, failures
            )
    except Exception as exc:
        if outage_of(exc) is None:
            raise
        _cache_down(exc)  # fail open: see the module docstring
