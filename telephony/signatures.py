"""Is this request really the carrier's? Twilio signs every webhook with the account's auth
token over the exact URL it requested and the POST parameters (X-Twilio-Signature). The
check is the ``twilio`` package's own ``RequestValidator``; this module only works out the
URL the carrier used and the token to check with (docs/telephony.md, "Security model")."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from telephony.models import CarrierAccount
from voice_platform.crypto import DecryptionError, decrypt_str

log = logging.getLogger(__name__)


def public_base_url(*, request: HttpRequest) -> str:
    """Where the carrier reaches us: ``PHONE_PUBLIC_URL`` when set (a proxy or tunnel in
    front rewrites host and scheme, and the signature covers the URL the carrier used),
    else this request's own scheme and host. No trailing slash."""
    configured: str = settings.PHONE_PUBLIC_URL
    if configured:
        return configured.rstrip("/")
    return f"{request.scheme}://{request.get_host()}"


def carrier_request_url(*, request: HttpRequest) -> str:
    """The full URL the carrier requested, as it signed it."""
    if settings.PHONE_PUBLIC_URL:
        return public_base_url(request=request) + request.get_full_path()
    return request.build_absolute_uri()


def carrier_auth_token(*, account: CarrierAccount) -> str | None:
    """The account's auth token in clear, or None when it cannot be decrypted (the
    encryption keys changed): then no request can be authenticated. Never logged."""
    try:
        return decrypt_str(account.auth_token_encrypted)
    except DecryptionError:
        log.error(
            "Carrier account %s: its auth token cannot be decrypted with the configured "
            "keys; its calls are refused until the token is entered again.",
            account.pk,
        )
        return None


def carrier_signature_valid(*, account: CarrierAccount, request: HttpRequest) -> bool:
    """Whether the request carries the carrier's valid signature over its URL and POST
    parameters. Missing, wrong, or a signature of other parameters: False."""
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not signature:
        return False
    token = carrier_auth_token(account=account)
    if not token:
        return False
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    validator = RequestValidator(token)
    return bool(
        validator.validate(carrier_request_url(request=request), request.POST, signature, algorithm)
    )
