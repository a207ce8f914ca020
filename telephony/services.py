"""Writes for carrier accounts and phone numbers (admin and REST agree: the rules are here
and in the models' ``clean()``). The auth token is stored encrypted and never returned."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from agents.models import Agent
from telephony.models import CarrierAccount, PhoneNumber
from telephony.selectors import phone_number_taken
from voice_platform.crypto import encrypt_str
from voice_platform.tenancy.models import Tenant
from voice_platform.writable import assign_writable

# Twilio's formats: an account SID is "AC" and 32 hex digits; an auth token 32 of them
# (a little leeway for the token, whose format Twilio does not promise).
ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
AUTH_TOKEN = re.compile(r"^[0-9A-Za-z]{16,128}$")

CARRIER_ACCOUNT_WRITABLE_FIELDS = ("name", "provider", "account_sid", "enabled")
PHONE_NUMBER_WRITABLE_FIELDS = ("number", "greeting", "greeting_by", "enabled")


def account_sid_problem(value: str) -> str | None:
    if not ACCOUNT_SID.fullmatch(value or ""):
        return "A Twilio account SID: AC followed by 32 hexadecimal digits."
    return None


def auth_token_problem(value: str) -> str | None:
    if not AUTH_TOKEN.fullmatch(value or ""):
        return "A Twilio auth token: 16 to 128 letters and digits (Twilio's are 32)."
    return None


@transaction.atomic
def carrier_account_create(
    *, tenant: Tenant, name: str, account_sid: str, auth_token: str, **fields: Any
) -> CarrierAccount:
    account = CarrierAccount(tenant=tenant)
    return carrier_account_update(
        account=account, auth_token=auth_token, name=name, account_sid=account_sid, **fields
    )


@transaction.atomic
def carrier_account_update(
    *, account: CarrierAccount, auth_token: str | None = None, **fields: Any
) -> CarrierAccount:
    """Save ``account`` (new or not) with ``fields``; a blank ``auth_token`` keeps the
    stored one (a new account needs one)."""
    assign_writable(account, fields, CARRIER_ACCOUNT_WRITABLE_FIELDS)
    errors: dict[str, str] = {}
    problem = account_sid_problem(account.account_sid)
    if problem:
        errors["account_sid"] = problem
    if auth_token:
        problem = auth_token_problem(auth_token)
        if problem:
            errors["auth_token"] = problem
        else:
            account.auth_token_encrypted = encrypt_str(auth_token)
    elif not account.auth_token_encrypted:
        errors["auth_token"] = "The account's auth token is required."  # noqa: S105 (a message)
    if errors:
        raise ValidationError(errors)
    account.full_clean()
    account.save()
    return account


@transaction.atomic
def carrier_account_delete(*, account: CarrierAccount) -> None:
    if PhoneNumber.objects.filter(carrier_account=account).exists():
        raise ValidationError("The account still has phone numbers: delete or move them first.")
    account.delete()


@transaction.atomic
def phone_number_create(
    *, tenant: Tenant, number: str, agent_id: int, carrier_account_id: int, **fields: Any
) -> PhoneNumber:
    phone_number = PhoneNumber(tenant=tenant)
    return phone_number_update(
        phone_number=phone_number,
        number=number,
        agent_id=agent_id,
        carrier_account_id=carrier_account_id,
        **fields,
    )


@transaction.atomic
def phone_number_update(
    *,
    phone_number: PhoneNumber,
    agent_id: int | None = None,
    carrier_account_id: int | None = None,
    **fields: Any,
) -> PhoneNumber:
    """Save ``phone_number`` (new or not). The agent and the account are looked up among the
    tenant's own: another tenant's id reads exactly like a missing one."""
    assign_writable(phone_number, fields, PHONE_NUMBER_WRITABLE_FIELDS)
    tenant_id = phone_number.tenant_id
    errors: dict[str, str] = {}
    if agent_id is not None:
        agent = Agent.objects.filter(tenant_id=tenant_id, pk=agent_id).first()
        if agent is None:
            errors["agent"] = "Unknown agent."
        else:
            phone_number.agent = agent
    if carrier_account_id is not None:
        account = CarrierAccount.objects.filter(tenant_id=tenant_id, pk=carrier_account_id).first()
        if account is None:
            errors["carrier_account"] = "Unknown carrier account."
        else:
            phone_number.carrier_account = account
    if phone_number.number and phone_number_taken(
        number=phone_number.number, excluding_pk=phone_number.pk
    ):
        errors["number"] = "This number is already registered."
    if errors:
        raise ValidationError(errors)
    phone_number.full_clean()
    try:
        with transaction.atomic():
            phone_number.save()
    except IntegrityError as exc:  # registered meanwhile by another request
        raise ValidationError({"number": "This number is already registered."}) from exc
    return phone_number


@transaction.atomic
def phone_number_delete(*, phone_number: PhoneNumber) -> None:
    """Its calls stay (their number becomes empty)."""
    phone_number.delete()
