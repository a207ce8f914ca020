"""``python manage.py bootstrap``: the first tenant, its admin user and an API key.

Idempotent: a second run changes nothing and mints no key unless ``--new-api-key``. Every
option also comes from a ``BOOTSTRAP_*`` environment variable (the compose stack's one-shot
service); the admin password is generated when none is given. Secrets (a generated
password, the API key) are printed once, on stdout, and never logged. ``--demo`` adds the
demo agent and a fresh key on every run (``make run``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.text import slugify

from voice_platform.tenancy.bootstrap import BootstrapError, BootstrapResult, bootstrap

DEFAULT_TENANT_NAME = "Default tenant"
DEFAULT_ADMIN_USERNAME = "admin"


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, "").strip() or default


class Command(BaseCommand):
    help = (
        "Create the first tenant, its admin user and an API key (idempotent). "
        "Options default to BOOTSTRAP_* environment variables."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--tenant-name",
            default=_env("BOOTSTRAP_TENANT_NAME", DEFAULT_TENANT_NAME),
            help="the tenant's display name (BOOTSTRAP_TENANT_NAME; default %(default)r)",
        )
        parser.add_argument(
            "--tenant-slug",
            default=_env("BOOTSTRAP_TENANT_SLUG"),
            help="the tenant's slug (BOOTSTRAP_TENANT_SLUG; default: from the name)",
        )
        parser.add_argument(
            "--admin-username",
            default=_env("BOOTSTRAP_ADMIN_USERNAME", DEFAULT_ADMIN_USERNAME),
            help="the admin user (BOOTSTRAP_ADMIN_USERNAME; default %(default)r)",
        )
        parser.add_argument(
            "--admin-email",
            default=_env("BOOTSTRAP_ADMIN_EMAIL"),
            help="the admin's e-mail address (BOOTSTRAP_ADMIN_EMAIL)",
        )
        parser.add_argument(
            "--admin-password",
            default=_env("BOOTSTRAP_ADMIN_PASSWORD"),
            help="the admin's password when the user is created (BOOTSTRAP_ADMIN_PASSWORD; "
            "prefer the variable: a flag shows in the process list). Generated and printed "
            "once when not given; an existing user's password is never changed.",
        )
        parser.add_argument(
            "--new-api-key",
            action="store_true",
            help="mint another API key even if the tenant exists (printed once)",
        )
        parser.add_argument(
            "--demo",
            action="store_true",
            help="the `make run` demo instead: tenant 'demo', a demo agent, a new key each run",
        )
        parser.add_argument("--json", action="store_true", help="print JSON only")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["demo"]:
            self._demo(as_json=options["json"])
            return
        slug = options["tenant_slug"] or slugify(options["tenant_name"])
        if not slug:
            raise CommandError("--tenant-slug (or a tenant name with letters) is required")
        try:
            result = bootstrap(
                tenant_name=options["tenant_name"],
                tenant_slug=slug,
                admin_username=options["admin_username"],
                admin_password=options["admin_password"] or None,
                admin_email=options["admin_email"],
                new_api_key=options["new_api_key"],
            )
        except BootstrapError as exc:
            raise CommandError(f"bootstrap refused: {exc}") from exc
        if options["json"]:
            self.stdout.write(json.dumps(result.as_json()))
            return
        self.stdout.write(self._describe(result))

    def _describe(self, result: BootstrapResult) -> str:
        def state(created: bool) -> str:
            return "created" if created else "exists, unchanged"

        head = "Bootstrap complete." if result.changed else "Already bootstrapped: nothing changed."
        lines = [
            self.style.SUCCESS(head),
            f"  tenant:   {result.tenant_slug} ({result.tenant_name}), "
            + state(result.tenant_created),
            f"  admin:    {result.admin_username}, {state(result.admin_created)}",
        ]
        if result.admin_password:
            lines.append(
                f"  password: {result.admin_password}  (generated; shown once, change it "
                "after signing in at /admin/)"
            )
        if result.api_key:
            lines.append(f"  API key:  {result.api_key}  (shown once; store it now)")
        else:
            lines.append("  API key:  none minted (--new-api-key mints another)")
        return "\n".join(lines)

    def _demo(self, *, as_json: bool) -> None:
        from voice_platform.demo import demo_bootstrap

        data = demo_bootstrap()
        if as_json:
            self.stdout.write(json.dumps(data.as_json()))
            return
        self.stdout.write(
            self.style.SUCCESS("Demo ready.")
            + f"\n  tenant:   {data.tenant}"
            + f"\n  admin:    {data.admin_username} / {data.admin_password}"
            + f"\n  agent id: {data.agent_id}"
            + f"\n  API key:  {data.api_key}  (new on every call; shown once)"
        )
