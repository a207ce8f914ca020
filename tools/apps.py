from __future__ import annotations

import logging
from typing import Any

from django.apps import AppConfig
from django.db import connections, transaction
from django.db.models.signals import post_delete, post_migrate, post_save

from tools.allowlist_version import allowlist_changed

logger = logging.getLogger(__name__)


def _sync_after_migrate(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    # Not at the top: an app's models must not load while the app registry fills.
    from tools.models import Tool
    from tools.services import tool_sync_registry

    # A partial migration plan (e.g. "migrate tools zero") may leave no table to sync into.
    if Tool._meta.db_table not in connections[using].introspection.table_names():
        return
    tool_sync_registry()


def _allowlist_changed(sender: type, instance: Any, **kwargs: Any) -> None:
    tenant_id = instance.tenant_id

    def bump() -> None:
        try:
            allowlist_changed(tenant_id)
        except Exception:
            # The edit itself must not fail on the cache: sessions still re-check the entry
            # when a call runs, and the next successful bump reloads them.
            logger.exception("could not bump the tool allowlist version of tenant %s", tenant_id)

    # Now and after commit: a session reloading in between would read the old rows.
    bump()
    transaction.on_commit(bump, robust=True)


class ToolsConfig(AppConfig):
    name = "tools"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tools.registry import load_tool_modules

        load_tool_modules()
        post_migrate.connect(_sync_after_migrate, sender=self, dispatch_uid="tools_sync")
        for model in (self.get_model("AgentTool"), self.get_model("WebhookTool")):
            for signal in (post_save, post_delete):
                signal.connect(_allowlist_changed, sender=model, dispatch_uid=f"tools_v_{model}")
