"""Reads for telephony. Callers are inside a tenant scope, except
``carrier_account_tenant_id`` (the carrier door's resolver, below)."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from telephony.models import CarrierAccount, PhoneCall, PhoneNumber
from voice_platform.tenancy.models import Tenant


def carrier_account_tenant_id(public_id: uuid.UUID) -> int | None:
    """The tenant owning the enabled carrier account ``public_id``, or None.

    Unscoped on purpose: this is how the carrier door (voice_platform/tenancy/inbound.py)
    learns which tenant's scope to enter; a carrier's request names nothing else. It reads
    one id and nothing more; the request's signature is checked inside the scope."""
    row = (
        CarrierAccount.unscoped.filter(public_id=public_id, enabled=True)
        .values_list("tenant_id", flat=True)
        .first()
    )
    return int(row) if row is not None else None


def carrier_account_list(*, tenant: Tenant) -> QuerySet[CarrierAccount]:
    return CarrierAccount.objects.filter(tenant=tenant)  # explicit, although the manager scopes


def carrier_account_by_public_id(
    *, tenant: Tenant | None = None, public_id: uuid.UUID
) -> CarrierAccount | None:
    """The enabled account ``public_id`` of the scope's tenant (or of ``tenant``), or None."""
    accounts = CarrierAccount.objects.filter(public_id=public_id, enabled=True)
    if tenant is not None:
        accounts = accounts.filter(tenant=tenant)
    return accounts.select_related("tenant").first()


def phone_number_list(*, tenant: Tenant) -> QuerySet[PhoneNumber]:
    return PhoneNumber.objects.filter(tenant=tenant).select_related("agent", "carrier_account")


def phone_number_taken(*, number: str, excluding_pk: int | None = None) -> bool:
    """Whether any tenant has ``number`` already (a number rings one agent on the whole
    platform). Unscoped on purpose: the uniqueness is global, so a scoped check would let
    the database refuse the row instead (a 500); only a yes/no leaves this function."""
    rows = PhoneNumber.unscoped.filter(number=number)
    if excluding_pk is not None:
        rows = rows.exclude(pk=excluding_pk)
    return rows.exists()


def phone_number_for_call(*, account: CarrierAccount, to_number: str) -> PhoneNumber | None:
    """The number a call to ``to_number`` rings on ``account``: a number of another of the
    tenant's accounts, or of another tenant, is no number here."""
    return (
        PhoneNumber.objects.filter(
            tenant_id=account.tenant_id, carrier_account=account, number=to_number
        )
        .select_related("agent")
        .first()
    )


def phone_call_list(*, tenant: Tenant) -> QuerySet[PhoneCall]:
    return PhoneCall.objects.filter(tenant=tenant).select_related("phone_number")


def phone_call_by_sid(*, account: CarrierAccount, call_sid: str) -> PhoneCall | None:
    """The call ``call_sid`` of ``account``'s tenant, or None."""
    return PhoneCall.objects.filter(tenant_id=account.tenant_id, call_sid=call_sid).first()


def carrier_account_has_sid(*, public_id: uuid.UUID, account_sid: str) -> bool:
    """Whether the scope's enabled account ``public_id`` is the carrier's ``account_sid``
    (a media stream's ``start`` says which account it comes from)."""
    return CarrierAccount.objects.filter(
        public_id=public_id, enabled=True, account_sid=account_sid
    ).exists()
