"""The DRF door: every tenant-facing endpoint derives from ``TenantAPIView``."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import Any

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from voice_platform.outages import outage_of
from voice_platform.tenancy.auth import ApiKeyAuthentication
from voice_platform.tenancy.models import ApiKey, Tenant
from voice_platform.tenancy.scope import tenant_scope

log = logging.getLogger(__name__)


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Per API key, rate from ``API_KEY_RATE``. DRF answers 429 with ``Retry-After``."""

    scope = "api_key"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None
        # The prefix, not the pk: it is random, so reused ids (test databases) never share counters.
        return f"throttle:api_key:{request.auth.prefix}"

    def allow_request(self, request: Request, view: APIView) -> bool:
        # The rate lives in the cache (Redis). Without it the request is let through: a
        # Redis outage must not take the API down with it, and nothing counts meanwhile.
        try:
            return super().allow_request(request, view)
        except Exception as exc:
            if outage_of(exc) is None:
                raise
            log.warning("API key rate not checked: the cache is unreachable: %s", exc)
            return True


def request_tenant(request: Request) -> Tenant:
    """The tenant of an authenticated API request (set by ``TenantAPIView.initial``)."""
    tenant: Tenant = request.tenant  # type: ignore[attr-defined]
    return tenant


class TenantViewMixin(APIView):
    """Opens the tenant scope for the whole request once the API key is authenticated.

    Put it first in the bases of any DRF view: ``class X(TenantViewMixin, ListAPIView)``.
    """

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [ApiKeyRateThrottle]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        with ExitStack() as self._tenant_scope:  # exits even if the handler raises
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authn, permissions, throttles
        api_key: ApiKey = request.auth  # type: ignore[assignment]
        request.tenant = api_key.tenant  # type: ignore[attr-defined]
        self._tenant_scope.enter_context(tenant_scope(api_key.tenant_id))


TenantAPIView = TenantViewMixin
