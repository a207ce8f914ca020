"""REST for tools: an agent's allowlist, webhook tools, and the read-only audit log.

Thin: parse, call a service or selector, serialize. Tool-call records have no write
endpoints at all (PUT/PATCH/DELETE answer 405).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from agents.selectors import agent_get
from tools.models import AgentTool, ToolCallRecord, WebhookTool
from tools.registry import get_tool
from tools.selectors import (
    agent_tool_get,
    agent_tool_list,
    tool_call_list,
    webhook_tool_get,
    webhook_tool_list,
)
from tools.services import (
    agent_tool_create,
    agent_tool_delete,
    agent_tool_update,
    webhook_tool_create,
    webhook_tool_delete,
    webhook_tool_update,
)
from voice_platform.rest_input import (
    IdFilterField,
    RefuseReadOnlyFieldsMixin,
    TextFilterField,
    validate_query,
)
from voice_platform.tenancy.api import TenantViewMixin, request_tenant
from voice_platform.tenancy.scope import tenant_scope

# --- allowlist -----------------------------------------------------------------------------


class AgentToolSerializer(RefuseReadOnlyFieldsMixin, serializers.ModelSerializer[AgentTool]):
    tool = serializers.CharField(
        required=False, allow_null=True, help_text="A platform tool's name."
    )
    webhook_tool = serializers.IntegerField(
        source="webhook_tool_id",
        required=False,
        allow_null=True,
        help_text="The id of one of your webhook tools.",
    )
    name = serializers.SerializerMethodField()
    available = serializers.SerializerMethodField()

    class Meta:
        model = AgentTool
        fields = (
            "id",
            "agent",
            "tool",
            "webhook_tool",
            "name",
            "available",
            "enabled",
            "policy",
            "rate_limit",
            "timeout_seconds",
            "created_at",
            "updated_at",
        )
        read_only_fields: tuple[str, ...] = (
            "id",
            "agent",
            "name",
            "available",
            "created_at",
            "updated_at",
        )
        validators: list[Any] = []  # constraints are the model's (full_clean in the service)

    def to_representation(self, instance: AgentTool) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["tool"] = instance.tool.name if instance.tool is not None else None
        return data

    def get_name(self, obj: AgentTool) -> str:
        return obj.tool_name

    def get_available(self, obj: AgentTool) -> bool:
        if obj.tool is not None:
            return get_tool(obj.tool.name) is not None
        return bool(obj.webhook_tool is not None and obj.webhook_tool.enabled)


class AgentToolUpdateSerializer(AgentToolSerializer):
    """On update the target tool is fixed: delete the entry and create another instead."""

    # Declared fields ignore Meta.read_only_fields: they are redeclared read-only, so a
    # write naming them is refused (400) rather than reaching the service (it was a 500).
    tool = serializers.CharField(
        read_only=True, allow_null=True, help_text="A platform tool's name."
    )
    webhook_tool = serializers.IntegerField(
        source="webhook_tool_id",
        read_only=True,
        allow_null=True,
        help_text="The id of one of your webhook tools.",
    )

    class Meta(AgentToolSerializer.Meta):
        read_only_fields: tuple[str, ...] = (
            *AgentToolSerializer.Meta.read_only_fields,
            "tool",
            "webhook_tool",
        )


class AgentToolListCreateApi(TenantViewMixin, generics.ListCreateAPIView[AgentTool]):
    serializer_class = AgentToolSerializer

    def get_queryset(self) -> Any:
        tenant = request_tenant(self.request)
        agent = agent_get(tenant=tenant, agent_id=self.kwargs["agent_id"])
        return agent_tool_list(tenant=tenant, agent=agent)

    def perform_create(self, serializer: AgentToolSerializer) -> None:  # type: ignore[override]
        tenant = request_tenant(self.request)
        data = dict(serializer.validated_data)
        serializer.instance = agent_tool_create(
            tenant=tenant,
            agent=agent_get(tenant=tenant, agent_id=self.kwargs["agent_id"]),
            tool_name=data.pop("tool", None),
            webhook_tool_id=data.pop("webhook_tool_id", None),
            **data,
        )


class AgentToolDetailApi(TenantViewMixin, generics.RetrieveUpdateDestroyAPIView[AgentTool]):
    serializer_class = AgentToolUpdateSerializer
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_object(self) -> AgentTool:
        tenant = request_tenant(self.request)
        agent = agent_get(tenant=tenant, agent_id=self.kwargs["agent_id"])
        return agent_tool_get(tenant=tenant, agent=agent, agent_tool_id=self.kwargs["pk"])

    def get_queryset(self) -> Any:  # for the schema generator only
        return AgentTool.objects.none()

    def perform_update(self, serializer: AgentToolUpdateSerializer) -> None:  # type: ignore[override]
        serializer.instance = agent_tool_update(
            agent_tool=self.get_object(), **serializer.validated_data
        )

    def perform_destroy(self, instance: AgentTool) -> None:
        agent_tool_delete(agent_tool=instance)


# --- webhook tools -------------------------------------------------------------------------


class WebhookToolSerializer(serializers.ModelSerializer[WebhookTool]):
    secret = serializers.CharField(
        write_only=True,
        required=False,
        trim_whitespace=True,
        style={"input_type": "password"},
        help_text="The signing secret (write-only; required on create).",
    )
    has_secret = serializers.SerializerMethodField()

    class Meta:
        model = WebhookTool
        fields = (
            "id",
            "name",
            "description",
            "parameters_schema",
            "url",
            "secret",
            "has_secret",
            "timeout_seconds",
            "rate_limit",
            "enabled",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("id", "has_secret", "created_at", "updated_at")
        validators: list[Any] = []  # constraints are the model's (full_clean in the service)

    def get_has_secret(self, obj: WebhookTool) -> bool:
        return bool(obj.secret_encrypted)


class WebhookToolListCreateApi(TenantViewMixin, generics.ListCreateAPIView[WebhookTool]):
    serializer_class = WebhookToolSerializer

    def get_queryset(self) -> Any:
        return webhook_tool_list(tenant=request_tenant(self.request))

    def perform_create(self, serializer: WebhookToolSerializer) -> None:  # type: ignore[override]
        data = dict(serializer.validated_data)
        serializer.instance = webhook_tool_create(
            tenant=request_tenant(self.request), secret=data.pop("secret", ""), **data
        )


class WebhookToolDetailApi(TenantViewMixin, generics.RetrieveUpdateDestroyAPIView[WebhookTool]):
    serializer_class = WebhookToolSerializer
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_object(self) -> WebhookTool:
        return webhook_tool_get(
            tenant=request_tenant(self.request), webhook_tool_id=self.kwargs["pk"]
        )

    def get_queryset(self) -> Any:  # for the schema generator only
        return WebhookTool.objects.none()

    def perform_update(self, serializer: WebhookToolSerializer) -> None:  # type: ignore[override]
        data = dict(serializer.validated_data)
        serializer.instance = webhook_tool_update(
            webhook_tool=self.get_object(), secret=data.pop("secret", None), **data
        )

    def perform_destroy(self, instance: WebhookTool) -> None:
        webhook_tool_delete(webhook_tool=instance)


# --- audit log -----------------------------------------------------------------------------


class ToolCallFilterSerializer(serializers.Serializer[dict[str, Any]]):
    agent = IdFilterField(required=False, help_text="An agent id.")
    tool = TextFilterField(required=False, max_length=64)
    status = serializers.ChoiceField(required=False, choices=ToolCallRecord.Status.choices)
    since = serializers.DateTimeField(required=False, help_text="ISO 8601, inclusive.")
    until = serializers.DateTimeField(required=False, help_text="ISO 8601, exclusive.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and until <= since:
            raise serializers.ValidationError({"until": "Must be after since."})
        return attrs


def _filtered_records(request: Request) -> Any:
    data = validate_query(ToolCallFilterSerializer, request.query_params)
    return tool_call_list(
        tenant=request_tenant(request),
        agent_id=data.get("agent"),
        tool_name=data.get("tool"),
        status=data.get("status"),
        since=data.get("since"),
        until=data.get("until"),
    ).select_related("agent")


class ToolCallRecordSerializer(serializers.ModelSerializer[ToolCallRecord]):
    session = serializers.UUIDField(source="session_ref", read_only=True)

    class Meta:
        model = ToolCallRecord
        fields = (
            "id",
            "agent",
            "session",
            "end_user_id",
            "call_id",
            "tool_name",
            "is_webhook",
            "arguments",
            "status",
            "rejection_reason",
            "result_preview",
            "error",
            "behavior",
            "scheduling",
            "timeout_seconds",
            "celery_task_id",
            "created_at",
            "queued_at",
            "started_at",
            "finished_at",
            "queue_ms",
            "duration_ms",
        )
        read_only_fields = fields


@extend_schema(parameters=[ToolCallFilterSerializer])
class ToolCallListApi(TenantViewMixin, generics.ListAPIView[ToolCallRecord]):
    """The tenant's audit log, newest first. Read-only."""

    serializer_class = ToolCallRecordSerializer

    def get_queryset(self) -> Any:
        return _filtered_records(self.request)


class ToolCallDetailApi(TenantViewMixin, generics.RetrieveAPIView[ToolCallRecord]):
    serializer_class = ToolCallRecordSerializer

    def get_queryset(self) -> Any:
        return tool_call_list(tenant=request_tenant(self.request))


CSV_COLUMNS = (
    "id",
    "created_at",
    "agent",
    "session",
    "end_user_id",
    "call_id",
    "tool_name",
    "status",
    "rejection_reason",
    "error",
    "arguments",
    "result_preview",
    "queued_at",
    "started_at",
    "finished_at",
    "queue_ms",
    "duration_ms",
)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_rows(tenant_id: int, queryset: Any) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    # The response streams after the view returned: the request's scope is closed by then.
    with tenant_scope(tenant_id):
        for record in queryset.iterator(chunk_size=500):
            yield writer.writerow(
                [
                    record.pk,
                    record.created_at.isoformat(),
                    record.agent_id or "",
                    record.session_ref,
                    record.end_user_id,
                    record.call_id,
                    record.tool_name,
                    record.status,
                    record.rejection_reason,
                    record.error,
                    json.dumps(record.arguments, sort_keys=True),  # already redacted
                    record.result_preview,
                    record.queued_at.isoformat() if record.queued_at else "",
                    record.started_at.isoformat() if record.started_at else "",
                    record.finished_at.isoformat() if record.finished_at else "",
                    "" if record.queue_ms is None else record.queue_ms,
                    "" if record.duration_ms is None else record.duration_ms,
                ]
            )


class ToolCallExportApi(TenantViewMixin, generics.GenericAPIView[ToolCallRecord]):
    """CSV of the audit log with the list's filters (arguments redacted, no secrets)."""

    serializer_class = ToolCallRecordSerializer
    pagination_class = None

    @extend_schema(
        parameters=[ToolCallFilterSerializer],
        responses={(200, "text/csv"): OpenApiResponse(response=OpenApiTypes.STR)},
    )
    def get(self, request: Request) -> StreamingHttpResponse | Response:
        queryset = _filtered_records(request).order_by("created_at", "id")
        response = StreamingHttpResponse(
            _csv_rows(request_tenant(request).pk, queryset), content_type="text/csv"
        )
        response["Content-Disposition"] = 'attachment; filename="tool-calls.csv"'
        return response
