"""What the agent asked to do with its phone call, from recording it to carrying it out.

``end_call`` / ``transfer_call`` record the intent (``phone_call_action_record``, in the tool's
transaction). The media stream sees the tool finish, lets the current sentence play, then
calls ``phone_call_action_carry_out``, which claims the action (``action_done_at``, a
conditional update: only one caller ever reaches the carrier) and asks the carrier.

All of these read through the scoped manager: call them inside the call's tenant scope
(the tool runner and the media stream's database threads are).

A carrier failure keeps the claim: the request may have reached the carrier anyway (a
timeout after it acted), and a second transfer or hang-up of the same call is worse than
none. The media stream then ends the session, and the carrier's ``stream-ended`` request
hangs up (docs/telephony.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from django.utils import timezone

from telephony.carrier import CarrierError, carrier_client_for
from telephony.models import CarrierAccount, PhoneCall
from tools.registry import PolicyViolation

logger = logging.getLogger(__name__)

CarryOutResult = Literal["hung_up", "transferred", "already_done", "no_action", "failed"]


def phone_call_action_record(
    *, tenant: Any, session_id: Any, action: str, target: str = ""
) -> PhoneCall:
    """Record ``action`` (``PhoneCall.Action``) on the session's phone call unless one is
    recorded already; the call as it is now (its ``action`` is the one that will happen).
    Raises ``PolicyViolation`` when the session is not one of ``tenant``'s phone calls or
    the call ended before any action was recorded."""
    # Explicit tenant, although the scoped manager filters too: two locks on one door.
    call: PhoneCall | None = (
        PhoneCall.objects.filter(tenant=tenant, session_id=session_id)
        .order_by("-started_at", "-id")
        .first()
    )
    if call is None:
        raise PolicyViolation("this session is not a phone call")
    if not call.action:
        # Conditional: of two calls racing, the second waits for the first's row lock, then
        # matches nothing and reads the first one's action; a call that ended meanwhile
        # takes no action at all.
        PhoneCall.objects.filter(pk=call.pk, action="", status=PhoneCall.Status.CONNECTED).update(
            action=action, action_target=target
        )
        call.refresh_from_db(fields=["action", "action_target", "status"])
    if not call.action:
        raise PolicyViolation("the phone call has already ended")
    return call


@dataclass(frozen=True)
class PendingAction:
    """An action recorded on a call and not yet carried out."""

    call_id: int
    call_sid: str
    action: str  # PhoneCall.Action: "hang_up" | "transfer"
    target: str  # the E.164 number of a transfer, else ""


def phone_call_action_pending(*, session_id: Any) -> PendingAction | None:
    """The session's phone call's action that is recorded and not carried out, or None."""
    call: PhoneCall | None = (
        PhoneCall.objects.filter(session_id=session_id, action_done_at__isnull=True)
        .exclude(action="")
        .order_by("-started_at", "-id")
        .first()
    )
    if call is None:
        return None
    return PendingAction(
        call_id=call.pk, call_sid=call.call_sid, action=call.action, target=call.action_target
    )


@dataclass(frozen=True)
class ClaimedAction:
    """An action this caller alone now carries out (``phone_call_action_claim``)."""

    call_sid: str
    action: str
    target: str
    account: CarrierAccount | None  # None: the call's number was deleted during the call


def phone_call_action_claim(*, call_id: int) -> ClaimedAction | CarryOutResult:
    """Claim the call's recorded action, once: the claim, or ``already_done`` when it was
    claimed before (by this or another process), ``no_action`` when none is recorded (or
    no such call in this tenant). Call it outside a transaction: the claim is then
    committed before the carrier request, which may take seconds."""
    claimed = (
        PhoneCall.objects.filter(pk=call_id, action_done_at__isnull=True)
        .exclude(action="")
        .update(action_done_at=timezone.now())
    )
    if not claimed:
        found = PhoneCall.objects.filter(pk=call_id).exclude(action="").exists()
        return "already_done" if found else "no_action"
    call = PhoneCall.objects.select_related("phone_number__carrier_account").get(pk=call_id)
    account = call.phone_number.carrier_account if call.phone_number is not None else None
    return ClaimedAction(call.call_sid, call.action, call.action_target, account)


def phone_call_action_perform(claimed: ClaimedAction) -> CarryOutResult:
    """Ask the carrier (no database: run it off the database threads, a carrier request
    may take seconds): ``hung_up`` / ``transferred``, or ``failed`` (logged; the claim
    stays, see the module's docstring)."""
    try:
        if claimed.account is None:
            raise CarrierError("the call's number no longer exists")
        client = carrier_client_for(account=claimed.account)
        if claimed.action == PhoneCall.Action.TRANSFER:
            client.transfer(call_sid=claimed.call_sid, to_number=claimed.target)
            return "transferred"
        client.hang_up(call_sid=claimed.call_sid)
        return "hung_up"
    except CarrierError as exc:
        # The reason holds no secret (CarrierError's contract); no traceback: it is expected.
        logger.warning("phone call %s: %s failed: %s", claimed.call_sid, claimed.action, exc)
        return "failed"


def phone_call_action_carry_out(*, call_id: int) -> CarryOutResult:
    """Claim and perform the call's recorded action (both steps in this thread)."""
    claimed = phone_call_action_claim(call_id=call_id)
    return claimed if isinstance(claimed, str) else phone_call_action_perform(claimed)
