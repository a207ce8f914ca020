"""The carrier door: a request a carrier (Twilio) sends about a phone call runs inside the
scope of the tenant that owns the carrier account named in its URL.

Why a fifth door: such a request carries neither an API key (DRF door), a WebSocket
credential (ASGI door), a task's tenant id (Celery) nor a staff login (admin). The only
thing it names is the account's public id, in the URL the tenant pasted into the carrier's
console; so the tenant is found with one unscoped lookup of that id (done by the resolver
the app passes in: this package knows no app's models). The public id is not a secret:
the handler must still check the carrier's signature, with the account's auth token,
before it trusts anything in the request. An unknown id answers 404 before any scope is
entered, so nothing of any tenant is read for it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotFound

from voice_platform.tenancy.scope import tenant_scope

# public id -> the owning tenant's id, or None when no (enabled) account has that id.
PublicIdResolver = Callable[[uuid.UUID], int | None]
CarrierView = Callable[..., HttpResponse]

NOT_FOUND_TEXT = "Unknown carrier account.\n"


def carrier_tenant_view(
    resolve: PublicIdResolver, *, kwarg: str = "account_id"
) -> Callable[[CarrierView], CarrierView]:
    """Decorate a view whose URL carries a carrier account's public id in ``kwarg``: the
    view runs inside that account's tenant scope, or the request answers 404 (plain text)."""

    def decorator(view: CarrierView) -> CarrierView:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            public_id = kwargs.get(kwarg)
            tenant_id = resolve(public_id) if isinstance(public_id, uuid.UUID) else None
            if tenant_id is None:
                return HttpResponseNotFound(NOT_FOUND_TEXT, content_type="text/plain")
            with tenant_scope(tenant_id):
                return view(request, *args, **kwargs)

        return wrapper

    return decorator
