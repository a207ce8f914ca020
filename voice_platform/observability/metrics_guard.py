"""Who may read ``/metrics``: a bearer token, or an address in an allowed network.

``METRICS_TOKEN``: a request with ``Authorization: Bearer <token>`` is served (compared in
constant time). ``METRICS_ALLOWED_NETWORKS``: a request from an address in one of these
CIDRs is served; the address is the project's client address (the peer, or the
``X-Forwarded-For`` hop a ``TRUSTED_PROXIES`` proxy vouches for). Every other request is
refused with 401. With neither set the endpoint does not exist for anyone (404): metrics
name tenants and must not be public by default.
"""

from __future__ import annotations

import enum
import hmac
import ipaddress
import logging
from collections.abc import Iterable

from django.conf import settings
from django.http import HttpRequest

from voice_platform.tenancy.attempts import UNKNOWN_ADDRESS, request_client_address

log = logging.getLogger(__name__)


class Access(enum.Enum):
    UNCONFIGURED = "unconfigured"  # neither a token nor networks: 404
    DENIED = "denied"  # 401
    ALLOWED = "allowed"


def metrics_access(request: HttpRequest) -> Access:
    token = settings.METRICS_TOKEN
    networks = settings.METRICS_ALLOWED_NETWORKS
    if not token and not networks:
        return Access.UNCONFIGURED
    if token and _bearer_matches(request.headers.get("Authorization", ""), token):
        return Access.ALLOWED
    if networks and _in_networks(request_client_address(request), networks):
        return Access.ALLOWED
    return Access.DENIED


def _bearer_matches(header: str, token: str) -> bool:
    scheme, _, credential = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Constant time: how much of a guess matched must not show in the response time.
    return hmac.compare_digest(credential.strip().encode(), token.encode())


def _in_networks(address: str, networks: Iterable[str]) -> bool:
    """Whether ``address`` (IPv6: its /64, as the client-address logic gives it) is in one
    of ``networks``; an entry that is not a CIDR matches nothing (and is logged)."""
    if address == UNKNOWN_ADDRESS:
        return False
    ip = ipaddress.ip_address(address)
    for cidr in networks:
        try:
            network = ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            log.error("METRICS_ALLOWED_NETWORKS: %r is not a CIDR; ignored", cidr)
            continue
        if ip in network:
            return True
    return False
