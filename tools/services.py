"""Writes for tools: the registry mirror, allowlists, webhook tools and the call lifecycle.

The lifecycle of a call (statuses of ``ToolCallRecord``)::

    requested -> rejected | queued
    queued    -> running | timeout | cancelled
    running   -> succeeded | failed | timeout | cancelled

Every transition is a conditional ``UPDATE ... WHERE status IN (...)``: two actors racing
(the worker finishing, the bridge timing out or cancelling) cannot both win, and a
redelivered task finds the call no longer ``queued`` and does nothing. Finished rows are
protected by a database trigger as well.

The bridge calls these synchronously inside the session's tenant scope (through
``database_sync_to_async``); the Celery task opens the scope itself.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connections, transaction
from django.utils import timezone
from google.genai import types

from agents.models import Agent
from sessions.models import VoiceSession
from tools.models import AgentTool, Tool, ToolCallRecord, WebhookTool
from tools.ratelimit import rate_limit_consume
from tools.registry import (
    PolicyViolation,
    ToolArgumentError,
    ToolContext,
    ToolSpec,
    get_tool,
    json_schema_to_gemini,
    parse_rate_limit,
    redact_arguments,
    registry,
)
from tools.webhooks import WebhookTimeout, webhook_post
from voice_platform.crypto import decrypt_str, encrypt_str
from voice_platform.tenancy.models import Tenant
from voice_platform.tenancy.scope import tenant_scope

logger = logging.getLogger(__name__)

Status = ToolCallRecord.Status
ERROR_MAX_CHARS = 500


# --- registry mirror ---------------------------------------------------------------------


@dataclass(frozen=True)
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)


@transaction.atomic
def tool_sync_registry() -> SyncReport:
    """Upsert a ``Tool`` row per registered tool; mark rows missing from code unavailable."""
    now = timezone.now()
    specs = registry()
    report = SyncReport()
    for name, spec in sorted(specs.items()):
        _, created = Tool.objects.update_or_create(
            name=name,
            defaults={
                "description": spec.description,
                "parameters_schema": spec.parameters_schema(),
                "policy_schema": spec.policy_schema(),
                "default_timeout": spec.timeout,
                "default_rate_limit": spec.rate_limit,
                "behavior": spec.behavior,
                "scheduling": spec.scheduling or "",
                "sensitive_args": list(spec.sensitive),
                "available": True,
                "synced_at": now,
            },
        )
        (report.created if created else report.updated).append(name)
    missing = Tool.objects.filter(available=True).exclude(name__in=list(specs))
    report.unavailable.extend(missing.values_list("name", flat=True))
    missing.update(available=False, synced_at=now)
    return report


# --- allowlist and webhook tools -----------------------------------------------------------

AGENT_TOOL_WRITABLE_FIELDS = ("enabled", "policy", "rate_limit", "timeout_seconds")


@transaction.atomic
def agent_tool_create(
    *,
    tenant: Tenant,
    agent: Agent,
    tool_name: str | None = None,
    webhook_tool_id: int | None = None,
    **fields: Any,
) -> AgentTool:
    """Allowlist a registry tool (by name) or one of the tenant's webhook tools (by id)."""
    if (tool_name is None) == (webhook_tool_id is None):
        raise ValidationError({"tool": "Give either tool (a platform tool name) or webhook_tool."})
    entry = AgentTool(tenant=tenant, agent=agent)
    if tool_name is not None:
        tool = Tool.objects.filter(name=tool_name).first()
        if tool is None:
            raise ValidationError({"tool": f"Unknown tool {tool_name!r}."})
        entry.tool = tool
    else:
        webhook = WebhookTool.objects.filter(tenant=tenant, pk=webhook_tool_id).first()
        if webhook is None:  # another tenant's id reads exactly like a missing one
            raise ValidationError({"webhook_tool": "Unknown webhook tool."})
        entry.webhook_tool = webhook
    for name, value in fields.items():
        if name not in AGENT_TOOL_WRITABLE_FIELDS:
            raise ValueError(f"{name} is not writable")
        setattr(entry, name, value)
    entry.full_clean()
    entry.save()
    return entry


@transaction.atomic
def agent_tool_update(*, agent_tool: AgentTool, **fields: Any) -> AgentTool:
    for name, value in fields.items():
        if name not in AGENT_TOOL_WRITABLE_FIELDS:
            raise ValueError(f"{name} is not writable")
        setattr(agent_tool, name, value)
    agent_tool.full_clean()
    agent_tool.save()
    return agent_tool


@transaction.atomic
def agent_tool_delete(*, agent_tool: AgentTool) -> None:
    agent_tool.delete()


WEBHOOK_TOOL_WRITABLE_FIELDS = (
    "name",
    "description",
    "parameters_schema",
    "url",
    "timeout_seconds",
    "rate_limit",
    "enabled",
)


@transaction.atomic
def webhook_tool_create(*, tenant: Tenant, secret: str, **fields: Any) -> WebhookTool:
    if not secret:
        raise ValidationError({"secret": "A signing secret is required."})
    webhook = WebhookTool(tenant=tenant)
    return webhook_tool_update(webhook_tool=webhook, secret=secret, **fields)


@transaction.atomic
def webhook_tool_update(
    *, webhook_tool: WebhookTool, secret: str | None = None, **fields: Any
) -> WebhookTool:
    for name, value in fields.items():
        if name not in WEBHOOK_TOOL_WRITABLE_FIELDS:
            raise ValueError(f"{name} is not writable")
        setattr(webhook_tool, name, value)
    if secret:
        webhook_tool.secret_encrypted = encrypt_str(secret)
    webhook_tool.full_clean()
    webhook_tool.save()
    return webhook_tool


@transaction.atomic
def webhook_tool_delete(*, webhook_tool: WebhookTool) -> None:
    webhook_tool.delete()


def webhook_declaration(webhook: WebhookTool) -> types.FunctionDeclaration:
    return types.FunctionDeclaration(
        name=webhook.name,
        description=webhook.description,
        parameters=json_schema_to_gemini(webhook.parameters_schema),
    )


def tool_declarations_for_agent(*, agent: Agent) -> list[types.FunctionDeclaration]:
    """Exactly the agent's enabled tools that can run: registry tools present in code and
    enabled webhook tools (the Live setup declares these and nothing else)."""
    declarations: list[types.FunctionDeclaration] = []
    seen: set[str] = set()
    entries = AgentTool.objects.filter(tenant_id=agent.tenant_id, agent=agent, enabled=True)
    for entry in entries.select_related("tool", "webhook_tool").order_by("id"):
        if entry.tool is not None:
            spec = get_tool(entry.tool.name)
            if spec is None or spec.name in seen:
                continue
            declarations.append(spec.function_declaration())
            seen.add(spec.name)
        elif entry.webhook_tool is not None and entry.webhook_tool.enabled:
            if entry.webhook_tool.name in seen or get_tool(entry.webhook_tool.name):
                continue  # a platform tool of the same name wins
            declarations.append(webhook_declaration(entry.webhook_tool))
            seen.add(entry.webhook_tool.name)
    return declarations


# --- admission -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    record: ToolCallRecord
    accepted: bool
    reason: str
    timeout: float
    behavior: str
    scheduling: str | None


@dataclass(frozen=True)
class _Resolved:
    entry: AgentTool
    spec: ToolSpec | None
    webhook: WebhookTool | None
    timeout: float
    rate_limit: str
    behavior: str
    scheduling: str | None
    sensitive: tuple[str, ...]


def _resolve(agent: Agent, name: str) -> _Resolved | None:
    """The agent's enabled allowlist entry for ``name`` that can run, or None."""
    entries = AgentTool.objects.filter(tenant_id=agent.tenant_id, agent=agent, enabled=True)
    spec = get_tool(name)
    if spec is not None:
        entry = entries.filter(tool__name=name).select_related("tool").first()
        if entry is None:
            return None
        return _Resolved(
            entry=entry,
            spec=spec,
            webhook=None,
            timeout=entry.timeout_seconds or spec.timeout,
            rate_limit=entry.rate_limit or spec.rate_limit,
            behavior=spec.behavior,
            scheduling=spec.scheduling,
            sensitive=spec.sensitive,
        )
    entry = (
        entries.filter(webhook_tool__name=name, webhook_tool__enabled=True)
        .select_related("webhook_tool")
        .first()
    )
    if entry is None or entry.webhook_tool is None:
        return None
    webhook = entry.webhook_tool
    return _Resolved(
        entry=entry,
        spec=None,
        webhook=webhook,
        timeout=entry.timeout_seconds or webhook.timeout_seconds,
        rate_limit=entry.rate_limit or webhook.rate_limit,
        behavior="BLOCKING",
        scheduling=None,
        sensitive=(),
    )


def _json_size(value: Any) -> int:
    return len(json.dumps(value, default=str).encode())


def _cap_arguments(args: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments as stored in the audit: JSON-safe and bounded."""
    safe = json.loads(json.dumps(dict(args), default=str))
    if _json_size(safe) > settings.TOOL_WEBHOOK_MAX_RESPONSE_BYTES:
        return {"_truncated": True, "names": sorted(safe)}
    return dict(safe)


def _webhook_arguments_error(schema: dict[str, Any], args: Mapping[str, Any]) -> str | None:
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(dict(args)))
    if error is None:
        return None
    loc = ".".join(str(part) for part in error.absolute_path)
    return (
        f"invalid argument {loc!r}: {error.message}"
        if loc
        else f"invalid arguments: {error.message}"
    )


def _admission_of(record: ToolCallRecord) -> Admission:
    accepted = record.status not in (Status.REJECTED, Status.REQUESTED)
    return Admission(
        record=record,
        accepted=accepted,
        reason=record.rejection_reason,
        timeout=record.timeout_seconds,
        behavior=record.behavior,
        scheduling=record.scheduling or None,
    )


def tool_call_admit(
    *,
    session: VoiceSession,
    agent: Agent,
    call_id: str,
    name: str,
    args: dict[str, Any],
) -> Admission:
    """Decide a function call the model asked for and record the decision (one row).

    Checked in order: allowlisted (enabled, present in code), arguments against the schema,
    the agent's policy, the per-end-user rate limit. A toolCall redelivered with the same
    (session, call id) gets the first decision back; no second row is written.
    """
    existing = ToolCallRecord.objects.filter(session_ref=session.pk, call_id=call_id).first()
    if existing is not None:
        return _admission_of(existing)

    now = timezone.now()
    args = dict(args or {})
    record = ToolCallRecord(
        tenant_id=agent.tenant_id,
        agent=agent,
        session=session,
        session_ref=session.pk,
        end_user_id=session.end_user_id,
        call_id=call_id,
        tool_name=name[:64],
    )
    resolved = _resolve(agent, name)
    reason = ""
    validated_json: dict[str, Any] | None = None
    if resolved is None:
        reason = f"tool {name!r} is not allowlisted for this agent"
        # Unknown tool, unknown sensitivity: keep the argument names only.
        record.arguments = _cap_arguments(redact_arguments(args, args.keys()))
    else:
        record.agent_tool = resolved.entry
        record.is_webhook = resolved.webhook is not None
        record.timeout_seconds = resolved.timeout
        record.behavior = resolved.behavior
        record.scheduling = resolved.scheduling or ""
        record.arguments = _cap_arguments(redact_arguments(args, resolved.sensitive))
        reason, validated_json = _check(resolved, args)
        if not reason:
            record.arguments = _cap_arguments(
                redact_arguments(validated_json or {}, resolved.sensitive)
            )
            limit, period = parse_rate_limit(resolved.rate_limit)
            # created_at too: an entry deleted and re-created starts with fresh counters.
            entry_key = f"{resolved.entry.pk}:{resolved.entry.created_at.timestamp()}"
            allowed = rate_limit_consume(
                scope=f"{entry_key}:{session.end_user_id}", limit=limit, period=period
            )
            if not allowed:
                reason = f"rate limit {resolved.rate_limit} exceeded for tool {name!r}"

    if reason:
        record.status = Status.REJECTED
        record.rejection_reason = reason[:500]
        record.finished_at = now
    else:
        record.status = Status.QUEUED
        record.queued_at = now
        record.pending_arguments = encrypt_str(json.dumps(validated_json))
    try:
        with transaction.atomic():
            record.save()
    except IntegrityError:
        # The same call admitted concurrently (a redelivered toolCall): the first row wins.
        existing = ToolCallRecord.objects.filter(session_ref=session.pk, call_id=call_id).first()
        if existing is None:
            raise
        return _admission_of(existing)
    return _admission_of(record)


def _check(resolved: _Resolved, args: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """(reason, validated arguments as JSON); an empty reason means admitted so far."""
    if resolved.spec is not None:
        spec = resolved.spec
        try:
            validated = spec.validate_args(args)
        except ToolArgumentError as exc:
            return str(exc), None
        try:
            policy = spec.validate_policy(resolved.entry.policy)
        except ValueError as exc:
            # Stored before a code change made it invalid: fail closed.
            return f"the policy of tool {spec.name!r} is invalid: {exc}", None
        try:
            spec.check_policy(validated, policy)
        except PolicyViolation as exc:
            return str(exc), None
        return "", validated.model_dump(mode="json")
    assert resolved.webhook is not None  # noqa: S101 (either a spec or a webhook)
    error = _webhook_arguments_error(resolved.webhook.parameters_schema, args)
    if error is not None:
        return error, None
    return "", args


# --- execution -----------------------------------------------------------------------------


def tool_call_enqueue(*, record: ToolCallRecord) -> str:
    """Send the call to a Celery worker once the current transaction commits.

    The task id is chosen here and stored first, so a cancellation can revoke it even before
    the worker sees it. Enqueuing twice sends one task: the second call returns the first id.
    """
    from tools.tasks import tool_call_execute_task

    task_id = str(uuid.uuid4())
    claimed = ToolCallRecord.objects.filter(
        pk=record.pk, status=Status.QUEUED, celery_task_id=""
    ).update(celery_task_id=task_id)
    if not claimed:
        record.refresh_from_db(fields=["celery_task_id", "status"])
        return record.celery_task_id
    record.celery_task_id = task_id
    kwargs = {"tenant_id": record.tenant_id, "record_id": record.pk}
    queue = settings.TOOL_CELERY_QUEUE
    transaction.on_commit(
        lambda: tool_call_execute_task.apply_async(kwargs=kwargs, task_id=task_id, queue=queue)
    )
    return task_id


class _Superseded(Exception):
    """The call was finished by someone else (timeout, cancel) while the tool ran."""


def _elapsed_ms(start: Any, end: Any) -> int | None:
    if start is None:
        return None
    return max(0, int((end - start).total_seconds() * 1000))


def _preview(result: Any) -> str:
    raw = json.dumps(result, ensure_ascii=False, default=str).encode()
    limit = settings.TOOL_RESULT_MAX_BYTES
    if len(raw) <= limit:
        return raw.decode()
    return raw[:limit].decode(errors="ignore") + "…"


def _finish(record: ToolCallRecord, status: str, *, result: Any = None, error: str = "") -> bool:
    """running -> a finished status; False when the call was finished by someone else."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "status": status,
        "finished_at": now,
        "duration_ms": _elapsed_ms(record.started_at, now),
        "pending_arguments": "",
        "error": error[:ERROR_MAX_CHARS],
    }
    if status == Status.SUCCEEDED:
        fields["result"] = result
        fields["result_preview"] = _preview(result)
    changed = ToolCallRecord.objects.filter(pk=record.pk, status=Status.RUNNING).update(**fields)
    return bool(changed)


def _invocation(record: ToolCallRecord) -> Callable[[], Any]:
    """A zero-argument callable that runs the call's tool and returns its result."""
    entry = record.agent_tool
    if entry is None or not entry.enabled:
        raise LookupError(f"tool {record.tool_name!r} is no longer allowlisted for this agent")
    args: dict[str, Any] = json.loads(decrypt_str(record.pending_arguments))
    if entry.webhook_tool_id is not None:
        webhook = entry.webhook_tool
        if webhook is None or not webhook.enabled:
            raise LookupError(f"webhook tool {record.tool_name!r} is disabled")
        payload = {
            "call_id": record.call_id,
            "tool": webhook.name,
            "arguments": args,
            "agent_id": record.agent_id,
            "session_id": str(record.session_ref),
            "end_user_id": record.end_user_id,
        }
        secret = decrypt_str(webhook.secret_encrypted)
        url, timeout = webhook.url, record.timeout_seconds
        return lambda: webhook_post(url=url, secret=secret, payload=payload, timeout=timeout)
    spec = get_tool(record.tool_name)
    if spec is None:
        raise LookupError(f"tool {record.tool_name!r} is not available")
    validated = spec.validate_args(args)
    policy = spec.validate_policy(entry.policy)
    context = ToolContext(
        tenant=record.tenant,
        agent=record.agent,
        session_id=record.session_ref,
        end_user_id=record.end_user_id,
        call_id=record.call_id,
        policy=policy,
        record_id=record.pk,
    )
    kwargs = {name: getattr(validated, name) for name in type(validated).model_fields}
    return lambda: spec.fn(context, **kwargs)


def _checked_result(result: Any) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise TypeError(f"tool returned {type(result).__name__}, not an object")
    safe: dict[str, Any] = json.loads(json.dumps(result, default=str))
    if _json_size(safe) > settings.TOOL_WEBHOOK_MAX_RESPONSE_BYTES:
        raise ValueError(f"result larger than {settings.TOOL_WEBHOOK_MAX_RESPONSE_BYTES} bytes")
    return safe


def _describe(exc: BaseException) -> str:
    """A short error for the model and the audit: class and message, never a traceback."""
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _run_and_finish(record: ToolCallRecord, invoke: Callable[[], Any]) -> None:
    """Run the tool and write its outcome; the tool's own writes share the transaction."""
    try:
        with tenant_scope(record.tenant_id):  # a new thread starts without the scope
            try:
                with transaction.atomic():
                    result = _checked_result(invoke())
                    if not _finish(record, Status.SUCCEEDED, result=result):
                        raise _Superseded
            except _Superseded:
                logger.info("tool call %s finished elsewhere; its writes rolled back", record.pk)
            except WebhookTimeout as exc:
                _finish(record, Status.TIMEOUT, error=str(exc))
            except Exception as exc:
                # Logged with its traceback here; the model only gets the short form.
                logger.exception("tool %s failed (call %s)", record.tool_name, record.pk)
                _finish(record, Status.FAILED, error=_describe(exc))
    finally:
        connections.close_all()  # this thread's connections only


def tool_call_execute(*, record_id: int) -> ToolCallRecord:
    """Run a queued call once; idempotent, never raises because of the tool.

    ``queued -> running`` is conditional: a redelivered task, or a call that timed out or
    was cancelled before it started, changes nothing and runs nothing. The tool runs in a
    thread bounded by the call's timeout; if it overruns, the call is marked ``timeout`` and
    whatever the tool finally returns is discarded (its writes are rolled back).
    """
    record: ToolCallRecord = ToolCallRecord.objects.select_related(
        "tenant", "agent", "agent_tool"
    ).get(pk=record_id)
    now = timezone.now()
    started = ToolCallRecord.objects.filter(pk=record_id, status=Status.QUEUED).update(
        status=Status.RUNNING, started_at=now, queue_ms=_elapsed_ms(record.queued_at, now)
    )
    if not started:
        return record
    record.status, record.started_at = Status.RUNNING, now
    try:
        invoke = _invocation(record)
    except Exception as exc:
        _finish(record, Status.FAILED, error=_describe(exc))
    else:
        worker = threading.Thread(
            target=_run_and_finish, args=(record, invoke), name=f"tool-{record_id}", daemon=True
        )
        worker.start()
        worker.join(record.timeout_seconds)
        if worker.is_alive():
            # Python cannot stop the thread; its late result loses the conditional update.
            tool_call_finish_early(record_id=record_id, status="timeout")
    record.refresh_from_db()
    tool_result_notify(record=record)
    return record


def tool_call_finish_early(
    *, record_id: int, status: Literal["timeout", "cancelled"], error: str = ""
) -> bool:
    """Finish a queued or running call as ``timeout`` or ``cancelled``; True if it changed.

    Cancelling also revokes the Celery task (not terminating the worker): a task that has
    not started never runs, one that has started loses its conditional update.
    """
    for _ in range(3):  # retried if the call moved queued -> running under us
        record = ToolCallRecord.objects.filter(pk=record_id).first()
        if record is None or record.status not in (Status.QUEUED, Status.RUNNING):
            return False
        now = timezone.now()
        default = (
            f"tool timed out after {record.timeout_seconds:g}s"
            if status == "timeout"
            else "cancelled"
        )
        changed = ToolCallRecord.objects.filter(pk=record_id, status=record.status).update(
            status=status,
            finished_at=now,
            duration_ms=_elapsed_ms(record.started_at, now),
            pending_arguments="",
            error=(error or default)[:ERROR_MAX_CHARS],
        )
        if changed:
            if status == "cancelled" and record.celery_task_id:
                _revoke(record.celery_task_id)
            return True
    return False


def _revoke(task_id: str) -> None:
    if settings.TOOL_EXECUTION != "celery":
        return
    from voice_platform.celery import app

    try:
        app.control.revoke(task_id)
    except Exception:  # the record already says cancelled; the worker checks it
        logger.warning("could not revoke tool task %s", task_id, exc_info=True)


def tool_call_response(*, record: ToolCallRecord) -> dict[str, Any]:
    """What the model receives for this call."""
    if record.status == Status.SUCCEEDED:
        return dict(record.result or {})
    if record.status == Status.REJECTED:
        return {"error": record.rejection_reason}
    if record.status == Status.FAILED:
        return {"error": record.error or "tool failed"}
    if record.status == Status.TIMEOUT:
        return {"error": f"tool timed out after {record.timeout_seconds:g}s"}
    if record.status == Status.CANCELLED:
        return {"error": "cancelled"}
    return {"error": f"tool call is still {record.status}"}


def tool_result_notify(*, record: ToolCallRecord) -> None:
    """Wake the consumer that holds the session now (it may have moved to another process).

    Only a wake-up: the consumer reads the record from the database, so a lost message
    costs latency, never the result.
    """
    channel = (
        VoiceSession.objects.filter(pk=record.session_ref)
        .values_list("connection_channel", flat=True)
        .first()
    )
    if not channel:
        return
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.send)(
            channel, {"type": "tool.result", "record_id": record.pk, "call_id": record.call_id}
        )
    except Exception:
        logger.warning("tool.result wake-up for call %s not delivered", record.pk, exc_info=True)
