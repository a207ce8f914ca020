"""Phone calls into agents (docs/telephony.md): a tenant's carrier accounts, the numbers
that ring its agents, and one row per call the carrier told us about."""

from __future__ import annotations

import re
import uuid
from typing import ClassVar

from django.core.exceptions import ValidationError
from django.db import models

from voice_platform.tenancy.models import TenantOwnedModel

# E.164: a plus, a country code not starting with 0, at most 15 digits in all.
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def validate_e164(value: str) -> None:
    if not E164.match(value or ""):
        raise ValidationError(f"{value!r} is not an E.164 number (like +14155550123).")


class CarrierAccount(TenantOwnedModel):  # type: ignore[django-manager-missing]
    """A tenant's account at a carrier. The carrier posts to URLs named by ``public_id``
    (not secret: the carrier's signature, checked with the auth token, is what counts)."""

    class Provider(models.TextChoices):
        TWILIO = "twilio", "Twilio"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    provider = models.CharField(max_length=16, choices=Provider.choices, default=Provider.TWILIO)
    account_sid = models.CharField(max_length=64)
    # Fernet token (voice_platform.crypto) of the auth token; never the plain value.
    auth_token_encrypted = models.TextField(editable=False)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering: ClassVar = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class PhoneNumber(TenantOwnedModel):  # type: ignore[django-manager-missing]
    """A number that rings one of the tenant's agents."""

    class GreetingBy(models.TextChoices):
        AGENT = "agent", "The agent says it (its own voice)"
        CARRIER = "carrier", "The carrier reads it before connecting"

    number = models.CharField(max_length=16, unique=True, validators=[validate_e164])
    # RESTRICT: neither goes while a number uses it, but a tenant's deletion takes all three.
    carrier_account = models.ForeignKey(
        CarrierAccount, on_delete=models.RESTRICT, related_name="numbers"
    )
    agent = models.ForeignKey("agents.Agent", on_delete=models.RESTRICT, related_name="+")
    greeting = models.CharField(
        max_length=500, blank=True, default="",
        help_text="Said when the call is answered; empty = the caller speaks first.",
    )  # fmt: skip
    greeting_by = models.CharField(
        max_length=8, choices=GreetingBy.choices, default=GreetingBy.AGENT
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering: ClassVar = ["number"]

    def __str__(self) -> str:
        return self.number

    def clean(self) -> None:
        errors: dict[str, str] = {}
        agent = getattr(self, "agent", None) if self.agent_id else None
        if agent is not None and agent.tenant_id != self.tenant_id:
            errors["agent"] = "Not an agent of this tenant."
        elif agent is not None and agent.response_modality != "AUDIO":
            errors["agent"] = "A phone number needs an agent that answers with audio."
        elif agent is not None and not agent.vad_enabled:
            errors["agent"] = (
                "A phone number needs an agent with automatic voice activity detection "
                "(a caller cannot say when their turn ends)."
            )
        account = getattr(self, "carrier_account", None) if self.carrier_account_id else None
        if account is not None and account.tenant_id != self.tenant_id:
            errors["carrier_account"] = "Not a carrier account of this tenant."
        if errors:
            raise ValidationError(errors)


class PhoneCall(TenantOwnedModel):  # type: ignore[django-manager-missing]
    """One inbound call, from the carrier's first request to its end."""

    class Status(models.TextChoices):
        RINGING = "ringing", "Ringing (answered with TwiML, stream not yet connected)"
        CONNECTED = "connected", "Connected to a session"
        ENDED = "ended", "Ended"
        REFUSED = "refused", "Refused"

    class Action(models.TextChoices):
        NONE = "", "None"
        HANG_UP = "hang_up", "Hang up"
        TRANSFER = "transfer", "Transfer"

    call_sid = models.CharField(max_length=64, unique=True)
    phone_number = models.ForeignKey(
        PhoneNumber, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    from_number = models.CharField(max_length=32, blank=True, default="")
    to_number = models.CharField(max_length=32, blank=True, default="")
    session = models.ForeignKey(
        "voice_sessions.VoiceSession",
        on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
    )  # fmt: skip
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RINGING)
    # Why it was refused or ended (docs/telephony.md lists them).
    reason = models.CharField(max_length=64, blank=True, default="")
    # What the agent asked for with end_call / transfer_call, carried out when the current
    # sentence has played.
    action = models.CharField(max_length=16, choices=Action.choices, blank=True, default="")
    action_target = models.CharField(max_length=16, blank=True, default="")
    action_done_at = models.DateTimeField(null=True, blank=True)
    # The hash of the nonce in the newest answer's ``<Connect action>`` URL (the carrier
    # signs that URL): only the stream-ended request of the newest answer may have a cut
    # call connected again, not a replay of an older signed request.
    answer_nonce_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    stream_restarts = models.PositiveSmallIntegerField(default=0)  # times connected again
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering: ClassVar = ["-started_at", "-id"]
        indexes: ClassVar = [models.Index(fields=["tenant", "-started_at"])]

    def __str__(self) -> str:
        return self.call_sid
