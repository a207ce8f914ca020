"""DRF authentication with tenant API keys (``Authorization: Bearer <key>``).

Failed attempts are counted per client address (``attempts``); a blocked address gets 429.
"""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from voice_platform.tenancy.attempts import (
    auth_failure_record,
    auth_failure_retry_after,
    request_client_address,
)
from voice_platform.tenancy.models import ApiKey
from voice_platform.tenancy.services import ApiKeyInvalid, TenantSuspended, api_key_authenticate


@dataclass(frozen=True)
class ApiKeyPrincipal:
    """``request.user`` for API-key requests: a tenant's backend, not a person."""

    api_key: ApiKey

    is_authenticated = True
    is_anonymous = False

    @property
    def pk(self) -> int:
        return self.api_key.pk


class ApiKeyAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal, ApiKey] | None:
        parts = get_authorization_header(request).split()
        if not parts:
            return None
        if parts[0].lower() != self.keyword:
            return None
        # Checked before the key: a blocked address is refused even with a valid one, so
        # guessing from it learns nothing.
        address = request_client_address(request)
        retry_after = auth_failure_retry_after(address=address)
        if retry_after is not None:
            raise exceptions.Throttled(
                wait=retry_after, detail="Too many failed authentication attempts."
            )
        if len(parts) != 2:
            auth_failure_record(address=address)
            raise exceptions.AuthenticationFailed("Malformed Authorization header.")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError as exc:
            auth_failure_record(address=address)
            raise exceptions.AuthenticationFailed("Invalid API key.") from exc
        try:
            api_key = api_key_authenticate(raw_key=raw)
        except ApiKeyInvalid as exc:
            auth_failure_record(address=address)
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.") from exc
        except TenantSuspended as exc:
            raise exceptions.PermissionDenied("The tenant is suspended.") from exc
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
