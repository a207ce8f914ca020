"""The ASGI door: a WebSocket's whole lifetime runs inside its tenant's scope.

The tenant comes from the connection's credential (resolved by the app that owns it);
an unresolvable credential leaves ``scope["tenant_id"]`` None and no scope entered, so
every tenant-owned query of that connection fails closed. When the credential cannot be
looked up at all (the database is unreachable), ``scope["unavailable"]`` names the missing
dependency, so the consumer refuses with "try again" rather than "unknown credential".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from voice_platform.db_threads import db_async
from voice_platform.outages import outage_of
from voice_platform.tenancy.scope import tenant_scope

TenantResolver = Callable[[dict[str, Any]], int | None]


class TenantMiddleware:
    def __init__(self, inner: Any, resolve: TenantResolver) -> None:
        self.inner = inner
        self.resolve = db_async(resolve)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        # When the connection reached the application: session starts are timed from here.
        scope = {**scope, "arrived_at": time.monotonic()}
        try:
            tenant_id = await self.resolve(scope)
        except Exception as exc:
            dependency = outage_of(exc)
            if dependency is None:
                raise
            return await self.inner({**scope, "tenant_id": None, "unavailable": dependency},
                                    receive, send)  # fmt: skip
        scope = {**scope, "tenant_id": tenant_id}
        if tenant_id is None:
            return await self.inner(scope, receive, send)
        with tenant_scope(tenant_id):
            return await self.inner(scope, receive, send)
