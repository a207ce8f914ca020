"""REST shapes of endpoints, deliveries and attempts (docs/api.md)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from integrations.models import EVENT_TYPES, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from integrations.services import endpoint_url_problem
from voice_platform.rest_input import IdFilterField, RefuseReadOnlyFieldsMixin


class WebhookEndpointSerializer(
    RefuseReadOnlyFieldsMixin, serializers.ModelSerializer[WebhookEndpoint]
):
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES),
        required=False,
        max_length=len(EVENT_TYPES),
        help_text="The event types sent to this endpoint; empty or absent: all of them.",
    )

    class Meta:
        model = WebhookEndpoint
        fields: tuple[str, ...] = (
            "id", "url", "description", "event_types", "enabled", "disabled_reason",
            "created_at", "updated_at",
        )  # fmt: skip
        read_only_fields: tuple[str, ...] = ("id", "disabled_reason", "created_at", "updated_at")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if isinstance(self.initial_data, dict) and "secret" in self.initial_data:
            raise serializers.ValidationError(
                {"secret": ["The signing secret is generated: see rotate-secret."]}
            )
        return attrs

    def validate_url(self, value: str) -> str:
        problem = endpoint_url_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    """The endpoint as created, with its signing secret: the only time it is shown."""

    secret = serializers.CharField(read_only=True)

    class Meta(WebhookEndpointSerializer.Meta):
        fields = (*WebhookEndpointSerializer.Meta.fields, "secret")
        read_only_fields = (*WebhookEndpointSerializer.Meta.read_only_fields, "secret")


class WebhookSecretSerializer(serializers.Serializer[dict[str, Any]]):
    secret = serializers.CharField(read_only=True, help_text="whsec_..., shown once.")


class WebhookAttemptSerializer(serializers.ModelSerializer[WebhookAttempt]):
    class Meta:
        model = WebhookAttempt
        fields = (
            "number", "started_at", "duration_ms", "status_code", "error", "outcome",
            "retry_after_seconds",
        )  # fmt: skip
        read_only_fields = fields


class WebhookDeliverySerializer(serializers.ModelSerializer[WebhookDelivery]):
    endpoint = serializers.IntegerField(source="endpoint_id", read_only=True)
    webhook_id = serializers.CharField(
        source="msg_id", read_only=True, help_text="The webhook-id header: one per message."
    )

    class Meta:
        model = WebhookDelivery
        fields: tuple[str, ...] = (
            "id", "endpoint", "event_type", "webhook_id", "subject", "status",
            "attempt_count", "next_attempt_at", "last_status_code", "last_error",
            "created_at", "updated_at",
        )  # fmt: skip
        read_only_fields = fields


class WebhookDeliveryDetailSerializer(WebhookDeliverySerializer):
    """One delivery: with the body sent (null until the first attempt) and every attempt."""

    attempts = WebhookAttemptSerializer(many=True, read_only=True)

    class Meta(WebhookDeliverySerializer.Meta):
        fields = (*WebhookDeliverySerializer.Meta.fields, "payload", "attempts")
        read_only_fields = fields


class WebhookDeliveryFilterSerializer(serializers.Serializer[dict[str, Any]]):
    endpoint = IdFilterField(required=False, help_text="An endpoint id.")
    event_type = serializers.ChoiceField(required=False, choices=[*EVENT_TYPES, "webhook.test"])
    status = serializers.ChoiceField(required=False, choices=WebhookDelivery.Status.choices)
