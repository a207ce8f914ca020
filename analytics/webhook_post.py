"""One signed POST to a tenant's endpoint, to the Standard Webhooks convention.

Headers (https://www.standardwebhooks.com/, signed with the ``standardwebhooks`` package)::

    webhook-id: <message id, the same for every attempt at the same message>
    webhook-timestamp: <unix seconds>
    webhook-signature: v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<raw body>")>

The outbound-address rules are those of webhook tools (``tools.webhooks``, docs/tools.md):
HTTPS only, no credentials in the URL, every resolved address public (or inside
``TOOL_WEBHOOK_ALLOWED_NETWORKS``), the connection pinned to the checked address with the
certificate verified for the hostname, no redirects followed, and one deadline over the
lookup, connect, send and answer (``tools.deadlines``). Only the status is read: a 2xx is
success, anything else an error. Generic on purpose: integrator webhooks (issue 15) can
send through it too.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

from django.conf import settings
from standardwebhooks import Webhook

from tools.deadlines import Deadline, socket_deadlines
from tools.webhooks import WebhookError, WebhookRefused, WebhookTimeout, resolve_public

USER_AGENT = "voice-platform-webhooks/1"


class WebhookStatusError(WebhookError):
    """The endpoint answered, but not with a 2xx."""

    def __init__(self, status: int) -> None:
        # Redirects are never followed: a 3xx could point the call at a private address.
        what = f"a redirect (HTTP {status})" if 300 <= status < 400 else f"HTTP {status}"
        super().__init__(f"webhook answered {what}")
        self.status = status


def _ssl_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    if settings.TOOL_WEBHOOK_CA_FILE:
        context.load_verify_locations(cafile=settings.TOOL_WEBHOOK_CA_FILE)
    return context


def _left(deadline: float, too_slow: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise WebhookTimeout(too_slow)
    return left


def signed_headers(*, secret: str, msg_id: str, body: bytes, at: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` (``secret`` in its ``whsec_`` form)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=msg_id, timestamp=at, data=body),
    }


def standard_webhook_post(
    *, url: str, secret: str, msg_id: str, body: bytes, timeout: float
) -> int:
    """POST ``body`` (JSON) to ``url``, signed; the 2xx status it answered.

    Raises ``WebhookRefused`` (a URL or address the platform does not call),
    ``WebhookTimeout`` (no answer within ``timeout`` seconds) or ``WebhookError`` (a
    non-2xx answer, TLS or connection failure). Messages never contain the secret.
    """
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise WebhookRefused("only https:// URLs are called")
    if parts.username or parts.password:
        raise WebhookRefused("credentials in the URL are not allowed")
    host, port = parts.hostname, parts.port or 443
    deadline = time.monotonic() + timeout
    too_slow = f"webhook did not answer within {timeout:g}s"
    address = resolve_public(host, port, timeout=_left(deadline, too_slow))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Host": parts.netloc,  # no credentials (refused above); keeps IPv6 brackets
        **signed_headers(secret=secret, msg_id=msg_id, body=body, at=datetime.now(UTC)),
    }
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    armed: Deadline | None = None
    fired = False
    status = 0
    try:
        raw = socket.create_connection((address, port), timeout=_left(deadline, too_slow))
        try:
            # Shut down at the deadline whatever call is blocked (a trickling peer).
            armed = socket_deadlines.arm(raw, deadline)
            with _ssl_context().wrap_socket(raw, server_hostname=host) as tls:
                # http.client on our pinned socket (it never connects itself once ``sock``
                # is set); its host is a placeholder, the Host header is explicit.
                connection = http.client.HTTPConnection("webhook.invalid")
                connection.sock = tls
                try:
                    tls.settimeout(_left(deadline, too_slow))
                    connection.request("POST", path, body=body, headers=headers)
                    status = connection.getresponse().status
                finally:
                    connection.close()
        finally:
            raw.close()  # a no-op once ssl took it over; closes it if the handshake failed
            if armed is not None:
                fired = socket_deadlines.disarm(armed)
    except WebhookError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise WebhookError("webhook TLS verification failed") from exc
    except (OSError, http.client.HTTPException) as exc:
        if fired or isinstance(exc, TimeoutError):
            raise WebhookTimeout(too_slow) from exc
        raise WebhookError(f"webhook connection failed: {type(exc).__name__}") from exc
    if fired:
        raise WebhookTimeout(too_slow)
    if not 200 <= status < 300:
        raise WebhookStatusError(status)
    return status
