"""Tools: the registry mirror, tenant webhook tools, per-agent allowlists and the audit log."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import jsonschema
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models

from agents.models import Agent
from tools.registry import TOOL_NAME_RE, get_tool, parse_rate_limit
from voice_platform.tenancy.models import Tenant, TenantOwnedModel


def validate_rate_limit(value: str) -> None:
    if value == "":
        return  # empty = the tool's default
    try:
        parse_rate_limit(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc


def validate_tool_name(value: str) -> None:
    if not TOOL_NAME_RE.match(value):
        raise ValidationError(
            "Use letters, digits, _ . or -, starting with a letter or _, at most 64 characters."
        )


def validate_parameters_schema(value: Any) -> None:
    """A JSON Schema (Draft 2020-12) describing an object: what a function takes."""
    if not isinstance(value, dict):
        raise ValidationError("The parameters schema must be a JSON object.")
    try:
        jsonschema.Draft202012Validator.check_schema(value)
    except jsonschema.SchemaError as exc:
        raise ValidationError(f"Not a valid JSON Schema: {exc.message}") from exc
    if value.get("type") != "object":
        raise ValidationError('The parameters schema must have "type": "object".')


class Behavior(models.TextChoices):
    BLOCKING = "BLOCKING", "Blocking"
    NON_BLOCKING = "NON_BLOCKING", "Non-blocking"


class Scheduling(models.TextChoices):
    WHEN_IDLE = "WHEN_IDLE", "When idle"
    INTERRUPT = "INTERRUPT", "Interrupt"
    SILENT = "SILENT", "Silent"


class Tool(models.Model):
    """Platform-wide mirror of the code registry (``tool_sync_registry``). Not tenant-owned."""

    name = models.CharField(max_length=64, unique=True)
    description = models.TextField(blank=True, default="")
    parameters_schema = models.JSONField(default=dict)
    policy_schema = models.JSONField(default=dict, blank=True)
    default_timeout = models.FloatField(default=10.0)
    default_rate_limit = models.CharField(max_length=32, default="30/min")
    behavior = models.CharField(max_length=16, choices=Behavior.choices, default=Behavior.BLOCKING)
    scheduling = models.CharField(max_length=16, choices=Scheduling.choices, blank=True, default="")
    sensitive_args = models.JSONField(default=list, blank=True)
    # False when the code no longer registers the tool: shown, never declared nor run.
    available = models.BooleanField(default=True)
    synced_at = models.DateTimeField()

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name if self.available else f"{self.name} (unavailable)"


class WebhookTool(TenantOwnedModel):
    """A tenant's own tool, defined in the admin: calls are POSTed, signed, to its URL."""

    name = models.CharField(max_length=64, validators=[validate_tool_name])
    description = models.TextField()
    parameters_schema = models.JSONField(
        default=dict,
        validators=[validate_parameters_schema],
        help_text='JSON Schema (2020-12) of the arguments, e.g. {"type": "object", '
        '"properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}.',
    )
    url = models.URLField(
        max_length=500,
        validators=[URLValidator(schemes=["https"])],
        help_text="HTTPS only. Private, loopback and link-local addresses are refused.",
    )
    # Fernet token (voice_platform.crypto); never the plain secret.
    secret_encrypted = models.TextField(editable=False, default="")
    timeout_seconds = models.FloatField(
        default=10.0,
        validators=[MinValueValidator(0.1), MaxValueValidator(settings.TOOL_TIMEOUT_MAX)],
    )
    rate_limit = models.CharField(
        max_length=32, default="30/min", validators=[validate_rate_limit],
        help_text="Default per end user, e.g. 5/min (N/sec|min|hour|day).",
    )  # fmt: skip
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["name", "id"]
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["tenant", "name"], name="webhooktool_tenant_name_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.name} (webhook)"

    def clean(self) -> None:
        super().clean()
        if self.name and (
            get_tool(self.name) is not None or Tool.objects.filter(name=self.name).exists()
        ):
            raise ValidationError({"name": f"{self.name!r} is the name of a platform tool."})


class AgentTool(TenantOwnedModel):
    """One allowlist entry: this agent may call this tool, under this policy."""

    # A named reverse accessor: the admin inline's form prefix is derived from it.
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="allowlisted_tools")
    tool = models.ForeignKey(
        Tool, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    webhook_tool = models.ForeignKey(
        WebhookTool, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    enabled = models.BooleanField(default=True)
    policy = models.JSONField(
        default=dict, blank=True, help_text="Validated against the tool's policy schema."
    )
    rate_limit = models.CharField(
        max_length=32, blank=True, default="", validators=[validate_rate_limit],
        help_text="Per end user, e.g. 5/min (N/sec|min|hour|day); empty = the tool's default.",
    )  # fmt: skip
    timeout_seconds = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1), MaxValueValidator(settings.TOOL_TIMEOUT_MAX)],
        help_text="Empty = the tool's default.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["id"]
        verbose_name = "allowlisted tool"
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=models.Q(tool__isnull=False, webhook_tool__isnull=True)
                | models.Q(tool__isnull=True, webhook_tool__isnull=False),
                name="agenttool_exactly_one_tool",
                violation_error_message="Choose either a platform tool or a webhook tool.",
            ),
            models.UniqueConstraint(
                fields=["agent", "tool"],
                condition=models.Q(tool__isnull=False),
                name="agenttool_agent_tool_uniq",
                violation_error_message="This tool is already allowlisted for the agent.",
            ),
            models.UniqueConstraint(
                fields=["agent", "webhook_tool"],
                condition=models.Q(webhook_tool__isnull=False),
                name="agenttool_agent_webhook_uniq",
                violation_error_message="This webhook tool is already allowlisted for the agent.",
            ),
        ]

    def __str__(self) -> str:
        return self.tool_name

    @property
    def tool_name(self) -> str:
        if self.tool is not None:
            return self.tool.name
        if self.webhook_tool is not None:
            return self.webhook_tool.name
        return "?"

    def clean(self) -> None:
        super().clean()
        if (self.tool_id is None) == (self.webhook_tool_id is None):
            raise ValidationError("Choose either a platform tool or a webhook tool.")
        if self.agent_id is not None and self.agent.tenant_id != self.tenant_id:
            raise ValidationError({"agent": "The agent belongs to another tenant."})
        if self.webhook_tool is not None:
            if self.webhook_tool.tenant_id != self.tenant_id:
                raise ValidationError({"webhook_tool": "Unknown webhook tool."})
            if self.policy:
                raise ValidationError({"policy": "Webhook tools take no policy."})
            return
        spec = get_tool(self.tool.name) if self.tool is not None else None
        if spec is None:
            # Missing from code: keep what is stored, it is never run anyway.
            return
        try:
            spec.validate_policy(self.policy)
        except ValueError as exc:
            raise ValidationError({"policy": str(exc)}) from exc


# What the database's check constraint allows. "requested" is no longer written (nor a choice);
# it stays allowed here because changing the constraint would rebuild the table on SQLite.
STATUSES = (
    "requested", "rejected", "queued", "running", "succeeded", "failed", "timeout", "cancelled",
)  # fmt: skip


class ToolCallRecord(TenantOwnedModel):
    """The audit log: one row per function call the model asked for, run or refused.

    Append-only. No admin or REST write exists, and a database trigger refuses any update of
    a finished row (see the migration), except nulling a foreign key when the referenced
    session, agent or allowlist entry is deleted.
    """

    class Status(models.TextChoices):
        REJECTED = "rejected", "Rejected"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        TIMEOUT = "timeout", "Timed out"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED: ClassVar = ("rejected", "succeeded", "failed", "timeout", "cancelled")

    # Every index is written on each insert, and on each update that changes an indexed
    # column (no HOT update then). A call is updated twice (claim, outcome), so the indexes
    # are the few the audit's queries need: tenant leads the composite ones (no index of its
    # own), status is in none, and the table leaves room in its pages for HOT updates.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)
    agent = models.ForeignKey(Agent, on_delete=models.SET_NULL, null=True, related_name="+")
    agent_tool = models.ForeignKey(
        AgentTool, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    session = models.ForeignKey(
        "voice_sessions.VoiceSession", on_delete=models.SET_NULL, null=True, related_name="+"
    )
    # Survives the session's deletion.
    session_ref = models.UUIDField(default=uuid.uuid4)
    # What the user asked, not the model's call id (``tools.idempotency``): a re-ask of the
    # same request (after a reconnect the model asks again with a new id) finds this row.
    # NULL on rows written before keys existed (NULL, not "": the unique index skips them,
    # and SQLite adds a nullable column without rebuilding the table and its trigger).
    idempotency_key = models.CharField(  # noqa: DJ001 (see above)
        max_length=64, null=True, blank=True, editable=False
    )
    # The conversation position of the turn the call answers (``sessions.uplink``).
    turn = models.PositiveIntegerField(null=True, blank=True)
    end_user_id = models.CharField(max_length=200, blank=True, default="")
    call_id = models.CharField(max_length=128)
    tool_name = models.CharField(max_length=64)
    is_webhook = models.BooleanField(default=False)
    arguments = models.JSONField(default=dict, help_text="Sensitive arguments are redacted.")
    # The validated arguments, encrypted, while the call waits or runs (``arguments`` is the
    # redacted audit copy); finishing wipes them.
    pending_arguments = models.TextField(blank=True, default="", editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    rejection_reason = models.CharField(max_length=500, blank=True, default="")
    # Delivered to the model (capped at TOOL_WEBHOOK_MAX_RESPONSE_BYTES).
    result = models.JSONField(null=True, blank=True)
    # What the audit shows (truncated to TOOL_RESULT_MAX_BYTES).
    result_preview = models.TextField(blank=True, default="")
    error = models.CharField(max_length=500, blank=True, default="")
    behavior = models.CharField(max_length=16, choices=Behavior.choices, default=Behavior.BLOCKING)
    scheduling = models.CharField(max_length=16, choices=Scheduling.choices, blank=True, default="")
    timeout_seconds = models.FloatField(default=10.0)
    # The Celery task's id (in-process: the run's own id, seen by no broker).
    celery_task_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    queue_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]
        verbose_name = "tool call"
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["session_ref", "call_id"], name="toolcallrecord_session_call_uniq"
            ),
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="toolcallrecord_idempotency_key_uniq",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=STATUSES),
                name="toolcallrecord_status_valid",
            ),
        ]
        indexes: ClassVar = [
            models.Index(fields=["tenant", "created_at"], name="toolcall_tenant_created"),
            models.Index(fields=["tenant", "tool_name"], name="toolcall_tenant_tool"),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} {self.call_id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class OutboxEmail(TenantOwnedModel):
    """Mail written by ``send_email``; the tenant sees it in the admin (no SMTP here)."""

    to = models.EmailField()
    subject = models.CharField(max_length=200)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    tool_call = models.ForeignKey(
        ToolCallRecord, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]
        verbose_name = "outbox email"

    def __str__(self) -> str:
        return f"to {self.to}: {self.subject}"


class LookupRecord(TenantOwnedModel):
    """A tenant's key/value table, read by ``lookup_record``."""

    key = models.CharField(max_length=200)
    value = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["key"]
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["tenant", "key"], name="lookuprecord_tenant_key_uniq")
        ]

    def __str__(self) -> str:
        return self.key
