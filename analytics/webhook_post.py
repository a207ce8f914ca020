"""One signed POST to a tenant's endpoint, to the Standard Webhooks convention.

Headers (https://www.standardwebhooks.com/, signed with the ``standardwebhooks`` package)::

    webhook-id: <message id, the same for every attempt at the same message>
    webhook-timestamp: <unix seconds>
    webhook-signature: v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<raw body>")>

The outbound-address rules are those of webhook tools, and so is the connection: it is
``tools.webhooks.pinned_post`` (docs/tools.md). HTTPS only, no credentials in the URL, every
resolved address public (or inside ``TOOL_WEBHOOK_ALLOWED_NETWORKS``), the connection pinned
to the checked address with the certificate verified for the hostname, no redirects
followed, and one deadline over the lookup, connect, send and answer (``tools.deadlines``).
Only the status is read: a 2xx is success, anything else an error. Generic on purpose:
integrator webhooks (issue 15) can send through it too.
"""

from __future__ import annotations

from datetime import UTC, datetime

from standardwebhooks import Webhook

from tools.webhooks import WebhookStatusError, pinned_post

# WebhookStatusError lives in tools.webhooks (both senders raise it); importable from here
# as before.
__all__ = ["USER_AGENT", "WebhookStatusError", "signed_headers", "standard_webhook_post"]

USER_AGENT = "voice-platform-webhooks/1"


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
    non-2xx answer, as ``WebhookStatusError`` with its status; TLS or connection failure).
    Messages never contain the secret.
    """
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signed_headers(secret=secret, msg_id=msg_id, body=body, at=datetime.now(UTC)),
    }
    # max_bytes=None: the status is all an alert needs, the answer is never read.
    status, _ = pinned_post(url=url, body=body, headers=headers, timeout=timeout, max_bytes=None)
    return status
