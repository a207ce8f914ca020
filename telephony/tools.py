"""Built-in phone tools: ``end_call`` and ``transfer_call`` (docs/telephony.md).

Allowlisted on an agent like any platform tool (``AgentTool``); ``transfer_call`` takes a
policy, the numbers it may transfer to (none = every transfer refused at admission). The
tool function only records the intent on the session's ``PhoneCall``
(``telephony.actions.phone_call_action_record``), in the transaction that finishes its
audit record; the media stream carries it out once the current sentence has played. The
first action recorded wins: a second call of either tool changes nothing and answers what
will happen.

A session that is not a phone call (or another tenant's: the scoped manager sees only the
session's tenant) is refused with a ``PolicyViolation`` from the function, so the call ends
``failed`` with that reason: admission's policy check sees the arguments, not the session.
"""

from __future__ import annotations

import re
from typing import Any

import pydantic
from django.core.exceptions import ValidationError

from telephony.actions import phone_call_action_record
from telephony.models import PhoneCall, validate_e164
from tools.registry import PolicyViolation, ToolContext, ToolPolicy, tool

# What people (and models) write inside phone numbers: "+1 (415) 555-0123".
_NUMBER_PUNCTUATION = re.compile(r"[\s().-]")


def normalize_e164(value: str) -> str:
    """``value`` without spaces and punctuation, checked as E.164. Raises ``ValueError``."""
    number = _NUMBER_PUNCTUATION.sub("", value)
    try:
        validate_e164(number)
    except ValidationError as exc:
        raise ValueError(f"{value!r} is not an E.164 number (like +14155550123)") from exc
    return number


class EndCallArgs(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    reason: str = pydantic.Field(
        default="",
        max_length=200,
        description="Optional: why the call ends, in a few words (kept in the call's log).",
    )


class TransferCallArgs(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    to: str = pydantic.Field(
        max_length=32,
        description=(
            "The number to transfer the caller to, in international form like +14155550123: "
            "only a number you were told you may transfer to."
        ),
    )

    @pydantic.field_validator("to")
    @classmethod
    def _e164(cls, value: str) -> str:
        return normalize_e164(value)


class TransferPolicy(ToolPolicy):
    """The numbers this agent may transfer calls to; empty = no transfer at all."""

    allowed_numbers: list[str] = pydantic.Field(
        default_factory=list, description="E.164 numbers, e.g. +14155550123."
    )

    @pydantic.field_validator("allowed_numbers")
    @classmethod
    def _valid_numbers(cls, value: list[str]) -> list[str]:
        return [normalize_e164(number) for number in value]

    def check(self, args: pydantic.BaseModel) -> None:
        assert isinstance(args, TransferCallArgs)  # noqa: S101 (the registry pairs them)
        if not self.allowed_numbers:
            raise PolicyViolation("no number is allowed for transfers")
        if args.to not in self.allowed_numbers:
            raise PolicyViolation(f"transfers to {args.to} are not allowed by policy")


def _answer(call: PhoneCall) -> dict[str, Any]:
    """What the model is told: the action that will happen (the first one recorded)."""
    if call.action == PhoneCall.Action.TRANSFER:
        return {"status": "transferring", "to": call.action_target}
    return {"status": "ending"}


@tool(
    name="end_call",
    description=(
        "Hang up the phone call after you finish your current sentence. Say goodbye first: "
        "the caller hears nothing you say after this. Use it when the caller is done or asks "
        "you to hang up."
    ),
    params=EndCallArgs,
    timeout=5.0,
    rate_limit="10/min",
)
def end_call(ctx: ToolContext, *, reason: str = "") -> dict[str, Any]:
    # ``reason`` is only for the audit record, which keeps the arguments.
    call = phone_call_action_record(
        tenant=ctx.tenant, session_id=ctx.session_id, action=PhoneCall.Action.HANG_UP
    )
    return _answer(call)


@tool(
    name="transfer_call",
    description=(
        "Transfer the phone call to another number after you finish your current sentence. "
        "Tell the caller first that you are transferring them. Only numbers you were given "
        "for transfers work."
    ),
    params=TransferCallArgs,
    policy=TransferPolicy,
    timeout=5.0,
    rate_limit="10/min",
)
def transfer_call(ctx: ToolContext, *, to: str) -> dict[str, Any]:
    call = phone_call_action_record(
        tenant=ctx.tenant, session_id=ctx.session_id, action=PhoneCall.Action.TRANSFER, target=to
    )
    return _answer(call)
