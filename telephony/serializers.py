"""REST shapes of carrier accounts, phone numbers and calls (docs/telephony.md)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from telephony.inbound import phone_urls
from telephony.models import CarrierAccount, PhoneCall, PhoneNumber
from telephony.services import ACCOUNT_SID, AUTH_TOKEN
from telephony.signatures import public_base_url
from voice_platform.rest_input import RefuseReadOnlyFieldsMixin

# ASCII digits only (a regex's \d also matches other scripts' digits).
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"
ID_MAX = 10**18 - 1  # fits PostgreSQL's bigint: a larger id is a 400, not a database error


class CarrierAccountSerializer(
    RefuseReadOnlyFieldsMixin, serializers.ModelSerializer[CarrierAccount]
):
    """On update ``auth_token`` is optional: absent keeps the stored one."""

    account_sid = serializers.RegexField(
        ACCOUNT_SID.pattern, max_length=34, help_text="Twilio's Account SID (AC...)."
    )
    auth_token = serializers.RegexField(
        AUTH_TOKEN.pattern,
        write_only=True,
        required=False,
        max_length=128,
        help_text="Twilio's auth token: stored encrypted, never returned.",
    )
    voice_url = serializers.SerializerMethodField(
        help_text="Paste into the number's 'A call comes in' webhook (HTTP POST) at Twilio."
    )
    stream_ended_url = serializers.SerializerMethodField(
        help_text="Where Twilio asks what to do when a call's media stream ends (set by the "
        "platform in its TwiML; shown for reference)."
    )

    class Meta:
        model = CarrierAccount
        fields: tuple[str, ...] = (
            "id", "public_id", "name", "provider", "account_sid", "auth_token", "enabled",
            "voice_url", "stream_ended_url", "created_at",
        )  # fmt: skip
        read_only_fields: tuple[str, ...] = ("id", "public_id", "created_at")

    def _base_url(self) -> str:
        # Without a request (a serializer used outside a view): the configured public URL,
        # or paths alone.
        request = self.context.get("request")
        if request is None:
            return str(settings.PHONE_PUBLIC_URL)
        return public_base_url(request=request)

    def get_voice_url(self, obj: CarrierAccount) -> str:
        return phone_urls(base_url=self._base_url(), public_id=obj.public_id).voice

    def get_stream_ended_url(self, obj: CarrierAccount) -> str:
        return phone_urls(base_url=self._base_url(), public_id=obj.public_id).stream_ended


class CarrierAccountCreateSerializer(CarrierAccountSerializer):
    """On create the auth token is required."""

    auth_token = serializers.RegexField(
        AUTH_TOKEN.pattern,
        write_only=True,
        max_length=128,
        help_text="Twilio's auth token: stored encrypted, never returned.",
    )


class PhoneNumberSerializer(RefuseReadOnlyFieldsMixin, serializers.ModelSerializer[PhoneNumber]):
    number = serializers.RegexField(
        E164_PATTERN, max_length=16, help_text="E.164, like +14155550123."
    )
    agent = serializers.IntegerField(
        source="agent_id",
        min_value=1,
        max_value=ID_MAX,
        help_text="The id of one of your agents that answers with audio.",
    )
    carrier_account = serializers.IntegerField(
        source="carrier_account_id",
        min_value=1,
        max_value=ID_MAX,
        help_text="The id of one of your carrier accounts.",
    )

    class Meta:
        model = PhoneNumber
        fields: tuple[str, ...] = (
            "id", "number", "carrier_account", "agent", "greeting", "greeting_by", "enabled",
            "created_at",
        )  # fmt: skip
        read_only_fields: tuple[str, ...] = ("id", "created_at")
        # The number's uniqueness is platform-wide; the service checks it (a scoped
        # validator would see only this tenant's numbers).
        validators: list[Any] = []
        extra_kwargs: dict[str, dict[str, Any]] = {"number": {"validators": []}}


class PhoneCallSerializer(serializers.ModelSerializer[PhoneCall]):
    phone_number = serializers.IntegerField(
        source="phone_number_id", read_only=True, allow_null=True
    )
    session = serializers.UUIDField(source="session_id", read_only=True, allow_null=True)

    class Meta:
        model = PhoneCall
        fields: tuple[str, ...] = (
            "id", "call_sid", "phone_number", "from_number", "to_number", "session", "status",
            "reason", "action", "action_target", "action_done_at", "started_at", "ended_at",
        )  # fmt: skip
        read_only_fields = fields
