"""Built-in tools. Each shows one part of the mechanism: argument validation
(``get_current_time``), a policy and a side effect in the audit transaction (``send_email``),
and tenant isolation through a tool (``lookup_record``)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from tools.models import LookupRecord, OutboxEmail
from tools.registry import PolicyViolation, ToolContext, ToolPolicy, tool


class CurrentTimeArgs(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    timezone: str = pydantic.Field(
        description="IANA time zone name, e.g. Europe/Berlin or America/New_York."
    )

    @pydantic.field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


@tool(
    name="get_current_time",
    description="The current date and time in a time zone.",
    params=CurrentTimeArgs,
    timeout=2.0,
    rate_limit="60/min",
)
def get_current_time(ctx: ToolContext, *, timezone: str) -> dict[str, Any]:
    now = dt.datetime.now(ZoneInfo(timezone))
    return {
        "timezone": timezone,
        "datetime": now.isoformat(timespec="seconds"),
        "weekday": now.strftime("%A"),
        "utc_offset": now.strftime("%z"),
    }


class SendEmailArgs(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    to: str = pydantic.Field(description="Recipient email address.", max_length=254)
    subject: str = pydantic.Field(description="Subject line.", min_length=1, max_length=200)
    body: str = pydantic.Field(description="Plain-text body.", max_length=20_000)

    @pydantic.field_validator("to")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        try:
            validate_email(value)
        except ValidationError as exc:
            raise ValueError(f"{value!r} is not a valid email address") from exc
        return value.strip()


def _domain_of(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()


class SendEmailPolicy(ToolPolicy):
    """Recipients the agent may write to; both lists empty = any recipient."""

    allowed_domains: list[str] = pydantic.Field(
        default_factory=list, description="e.g. example.com (exact domain, no subdomains)."
    )
    allowed_addresses: list[str] = pydantic.Field(default_factory=list)

    @pydantic.field_validator("allowed_domains")
    @classmethod
    def _lower_domains(cls, value: list[str]) -> list[str]:
        return [domain.strip().lower().lstrip("@") for domain in value if domain.strip()]

    @pydantic.field_validator("allowed_addresses")
    @classmethod
    def _valid_addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            try:
                validate_email(address)
            except ValidationError as exc:
                raise ValueError(f"{address!r} is not a valid email address") from exc
        return [address.strip().lower() for address in value]

    def check(self, args: pydantic.BaseModel) -> None:
        assert isinstance(args, SendEmailArgs)  # noqa: S101 (the registry pairs them)
        if not self.allowed_domains and not self.allowed_addresses:
            return
        recipient = args.to.lower()
        if recipient in self.allowed_addresses or _domain_of(recipient) in self.allowed_domains:
            return
        raise PolicyViolation(f"recipient {args.to} is not allowed by policy")


@tool(
    name="send_email",
    description="Send a plain-text email on the user's behalf.",
    params=SendEmailArgs,
    policy=SendEmailPolicy,
    timeout=5.0,
    rate_limit="5/min",
    sensitive=("body",),
)
def send_email(ctx: ToolContext, *, to: str, subject: str, body: str) -> dict[str, Any]:
    # Runs inside the transaction that finishes the audit record: both or neither.
    email = OutboxEmail.objects.create(
        tenant=ctx.tenant, to=to, subject=subject, body=body, tool_call_id=ctx.record_id
    )
    return {"status": "accepted", "outbox_id": email.pk, "to": to}


@tool(
    name="lookup_record",
    description="Look up a value by its key in the organisation's records.",
    timeout=3.0,
    rate_limit="30/min",
)
def lookup_record(
    ctx: ToolContext,
    key: Annotated[
        str, pydantic.Field(min_length=1, max_length=200, description="The record's key.")
    ],
) -> dict[str, Any]:
    # Explicit tenant, although the scoped manager filters too: two locks on one door.
    record = LookupRecord.objects.filter(tenant=ctx.tenant, key=key).first()
    if record is None:
        return {"found": False, "key": key}
    return {"found": True, "key": key, "value": record.value}
