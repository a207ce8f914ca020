"""Writes for tools: the registry mirror, allowlists, webhook tools and the call lifecycle.

The lifecycle of a call (statuses of ``ToolCallRecord``), one row per (session, call id)::

    admission -> rejected                      (a refused call: written at once)
    start     -> running                       (an accepted call: written by its worker)
    running   -> succeeded | failed | timeout | cancelled
    (never started) -> timeout | cancelled | failed   (written by the bridge)

An accepted call is not written until it starts: the worker's INSERT of the ``running``
row is the audit record and the claim, in one synchronous commit, so the critical path has
two (start, outcome). Every write is conditional: an INSERT that a row with the same
(session, call id) turns into nothing, or an ``UPDATE ... WHERE status = 'running'``. Two
actors racing (the worker starting or finishing, the bridge timing out or cancelling)
cannot both win, and a redelivered task finds the row and does nothing. Finished rows are
protected by a database trigger as well. (``queued`` is what rows written before this
design say while waiting; nothing writes it now.)

The bridge calls these synchronously inside the session's tenant scope (through
``database_sync_to_async``); the Celery task opens the scope itself.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import jsonschema
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import SuspiciousOperation, ValidationError
from django.db import IntegrityError, connections, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.functional import SimpleLazyObject
from google.genai import types

from agents.models import Agent
from sessions.models import VoiceSession
from tools.allowlist_version import (
    allowlist_version,
    allowlist_version_key,
    allowlist_version_of,
)
from tools.models import AgentTool, Tool, ToolCallRecord, WebhookTool
from tools.ratelimit import (
    REPEATED,
    rate_limit_consume_and_push,
    rate_limit_consume_and_read,
    rate_limit_refund,
)
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
from tools.task_publish import broker_mirrored, publish_task, task_message
from tools.tool_threads import tool_threads
from tools.webhooks import WebhookTimeout, webhook_post
from voice_platform.channel_send import channel_send_blocking
from voice_platform.crypto import decrypt_str, encrypt_str
from voice_platform.tenancy.models import Tenant
from voice_platform.tenancy.scope import current_tenant_id, tenant_scope

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
    return agent_tool_update(agent_tool=entry, **fields)


def _assign_writable(obj: Any, fields: dict[str, Any], writable: tuple[str, ...]) -> None:
    for name, value in fields.items():
        if name not in writable:
            raise ValueError(f"{name} is not writable")
        setattr(obj, name, value)


@transaction.atomic
def agent_tool_update(*, agent_tool: AgentTool, **fields: Any) -> AgentTool:
    _assign_writable(agent_tool, fields, AGENT_TOOL_WRITABLE_FIELDS)
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
    _assign_writable(webhook_tool, fields, WEBHOOK_TOOL_WRITABLE_FIELDS)
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


# --- admission -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    """What admission decided. A refused call (or a repeat of a written one) has its
    ``record``; an accepted one its ``pending`` call, written when it starts."""

    record: ToolCallRecord | None
    pending: PendingCall | None
    allowlist: ToolAllowlist | None
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


def _resolved_spec(entry: AgentTool, spec: ToolSpec) -> _Resolved:
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


def _resolved_webhook(entry: AgentTool, webhook: WebhookTool) -> _Resolved:
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


def tool_declarations_for_agent(*, agent: Agent) -> list[types.FunctionDeclaration]:
    """Exactly the agent's enabled tools that can run: registry tools present in code and
    enabled webhook tools (the Live setup declares these and nothing else)."""
    return tool_allowlist_for_agent(agent=agent).declarations


@dataclass(frozen=True)
class ToolAllowlist:
    """An agent's runnable tools, resolved once: what a session's Live setup declares and
    what its calls are admitted against, without reading the allowlist per call.

    ``version`` is the tenant's allowlist version when it was read (``allowlist_version``);
    admission reloads it once that moves on.
    """

    agent: Agent
    version: str
    declarations: list[types.FunctionDeclaration]
    entries: dict[str, _Resolved]

    def resolve(self, name: str) -> _Resolved | None:
        return self.entries.get(name)


def tool_allowlist_for_agent(*, agent: Agent) -> ToolAllowlist:
    """The agent's enabled allowlist entries that can run, keyed by tool name.

    A platform tool wins over a webhook tool of the same name; a tool missing from code or
    a disabled webhook tool is left out (and so refused as not allowlisted).
    """
    version = allowlist_version(agent.tenant_id)  # first: a change during the read reloads
    declarations: list[types.FunctionDeclaration] = []
    entries: dict[str, _Resolved] = {}
    rows = AgentTool.objects.filter(tenant_id=agent.tenant_id, agent=agent, enabled=True)
    for entry in rows.select_related("tool", "webhook_tool").order_by("id"):
        if entry.tool is not None:
            spec = get_tool(entry.tool.name)
            if spec is None or spec.name in entries:
                continue
            declarations.append(spec.function_declaration())
            entries[spec.name] = _resolved_spec(entry, spec)
        elif entry.webhook_tool is not None and entry.webhook_tool.enabled:
            webhook = entry.webhook_tool
            if webhook.name in entries or get_tool(webhook.name):
                continue  # a platform tool of the same name wins
            declarations.append(webhook_declaration(webhook))
            entries[webhook.name] = _resolved_webhook(entry, webhook)
    return ToolAllowlist(agent=agent, version=version, declarations=declarations, entries=entries)


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


@dataclass(frozen=True)
class PendingCall:
    """An accepted call that has not started: everything starting it writes.

    It travels in the Celery task message (``as_message``), so the bridge writes nothing for
    an accepted call: the worker's INSERT of the audit row (``running``) is both the record
    and the claim. ``sealed_arguments`` are the validated arguments, encrypted; the rate-limit
    window is carried so a repeated call can give its slot back.
    """

    tenant_id: int
    agent_id: int
    agent_tool_id: int
    session_id: str | None
    session_ref: str
    end_user_id: str
    call_id: str
    tool_name: str
    is_webhook: bool
    arguments: dict[str, Any]
    sealed_arguments: str
    behavior: str
    scheduling: str
    timeout_seconds: float
    task_id: str
    queued_at: float  # epoch seconds
    rate_scope: str
    rate_period: int
    rate_now: float

    def as_message(self) -> dict[str, Any]:
        """JSON for the task message, signed: a worker runs only calls this platform
        admitted, exactly as admitted (tenant, entry, session, call id, arguments)."""
        fields = dataclasses.asdict(self)
        return {**fields, "signature": _signature(fields)}

    def describe(self) -> str:
        return f"{{'tenant_id': {self.tenant_id}, 'call': <{self.tool_name} {self.call_id!r}>}}"

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> PendingCall:
        """The call in a task message; ``SuspiciousOperation`` unless its signature holds."""
        fields = {key: value for key, value in message.items() if key != "signature"}
        if not constant_time_compare(str(message.get("signature", "")), _signature(fields)):
            raise SuspiciousOperation("tool call message with a bad signature: not run")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in fields.items() if key in known})

    def record(self, **fields: Any) -> ToolCallRecord:
        """The audit row of this call (unsaved), with ``fields`` set."""
        return ToolCallRecord(
            tenant_id=self.tenant_id,
            agent_id=self.agent_id,
            agent_tool_id=self.agent_tool_id,
            session_id=None if self.session_id is None else uuid.UUID(self.session_id),
            session_ref=uuid.UUID(self.session_ref),
            end_user_id=self.end_user_id,
            call_id=self.call_id,
            tool_name=self.tool_name,
            is_webhook=self.is_webhook,
            arguments=self.arguments,
            behavior=self.behavior,
            scheduling=self.scheduling,
            timeout_seconds=self.timeout_seconds,
            celery_task_id=self.task_id,
            queued_at=datetime.fromtimestamp(self.queued_at, tz=UTC),
            **fields,
        )


def _signature(fields: Mapping[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return salted_hmac("tools.PendingCall", canonical, algorithm="sha256").hexdigest()


def _admission_of(record: ToolCallRecord, allowlist: ToolAllowlist | None = None) -> Admission:
    accepted = record.status not in (Status.REJECTED, Status.REQUESTED)
    return Admission(
        record=record,
        pending=None,
        allowlist=allowlist,
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
    allowlist: ToolAllowlist | None = None,
    enqueue: bool = False,
) -> Admission:
    """Decide a function call the model asked for.

    Checked in order: allowlisted (enabled, present in code), arguments against the schema,
    the agent's policy, the per-end-user rate limit. ``allowlist`` is the session's copy
    (reloaded here if an entry changed since; the one used comes back in the admission);
    without it the agent's is read now.

    A refused call is written at once (``rejected``); a toolCall redelivered with the same
    (session, call id) gets the first refusal back and no second row. An accepted call comes
    back as a ``PendingCall`` and nothing is written: the audit row is written when the call
    starts (``tool_call_execute``), or by ``tool_call_finish_early`` if it never does. With
    ``enqueue`` it is sent to a Celery worker here; a broker that refuses it fails the call.
    """
    now = time.time()
    args = dict(args or {})
    copy = allowlist
    if allowlist is None:
        allowlist = tool_allowlist_for_agent(agent=agent)
    if not cache.add(admitted_marker_key(str(session.pk), call_id), 1, ADMITTED_MARKER_SECONDS):
        return _repeat_admission(session, call_id, name, allowlist)
    if copy is None:
        decision = _decide(allowlist, name, args, session.end_user_id, check_version=False)
    else:
        # Decided against the copy, reading its version in the rate limit's round trip;
        # if the allowlist moved on meanwhile, decided again against the current one.
        decision = _decide(allowlist, name, args, session.end_user_id, check_version=True)
        if decision.version != allowlist.version:
            if decision.refund is not None:
                decision.refund()
            allowlist = tool_allowlist_for_agent(agent=agent)
            decision = _decide(allowlist, name, args, session.end_user_id, check_version=False)
    resolved, reason = decision.resolved, decision.reason
    if reason or resolved is None:
        return _reject(session, agent, call_id, name, args, resolved, reason, allowlist)
    scope, period, window_now = decision.rate_scope, decision.rate_period, decision.rate_now
    pending = _pending_call(session, agent, call_id, name, resolved, decision.validated or {},
                            now, (scope, period, window_now))  # fmt: skip
    if enqueue:
        try:
            _send_task(pending)
        except Exception as exc:
            return tool_call_queue_failed(pending=pending, error=exc, allowlist=allowlist)
    return _accepted(pending, allowlist)


async def tool_call_admit_on_loop(
    *,
    session: VoiceSession,
    agent: Agent,
    call_id: str,
    name: str,
    args: dict[str, Any],
    allowlist: ToolAllowlist,
) -> Admission | None:
    """``tool_call_admit(enqueue=True)`` for the common case, on the event loop: an
    allowlisted call with valid arguments, against a current allowlist copy, with Celery on
    the Redis that also holds the cache. Returns None for anything else (a refusal to write,
    an allowlist to reload, another setup): then call ``tool_call_admit`` in a thread.

    The checks are CPU; the allowlist version, the rate-limit window and the task's
    publication are one atomic Redis round trip (``rate_limit_consume_and_push``). Handing
    admission to a thread cost two thread wake-ups per call, and on Daphne that thread is the
    one that serializes the process's database calls.
    """
    url = _loop_admission_redis_url()
    resolved = allowlist.resolve(name)
    if url is None or resolved is None:
        return None
    args = dict(args or {})
    reason, validated = _check(resolved, args)
    if reason or validated is None:
        return None  # refused: decided again and written in the thread
    limit, period = parse_rate_limit(resolved.rate_limit)
    scope, now = _rate_scope(resolved, session.end_user_id), time.time()
    pending = _pending_call(session, agent, call_id, name, resolved, validated, now,
                            (scope, period, now))  # fmt: skip
    message = _task_message(pending)
    try:
        outcome = await rate_limit_consume_and_push(
            url=url, scope=scope, limit=limit, period=period, now=now,
            version_key=allowlist_version_key(agent.tenant_id), version=allowlist.version,
            queue=settings.TOOL_CELERY_QUEUE, message=message,
            marker_key=admitted_marker_key(pending.session_ref, call_id),
            marker_seconds=ADMITTED_MARKER_SECONDS,
        )  # fmt: skip
    except Exception:
        logger.warning("tool call %s: admission on the loop failed", call_id, exc_info=True)
        return None  # the thread's path decides (and reports a broker failure there)
    if outcome < 0:
        return None  # the allowlist moved on: the thread reloads it; nothing was counted
    if outcome == REPEATED:
        repeat: Admission = await database_sync_to_async(_repeat_admission)(
            session, call_id, name, allowlist
        )
        return repeat
    if outcome == 0:
        refused: Admission = await database_sync_to_async(tool_call_refuse)(
            session=session, agent=agent, call_id=call_id, name=name, args=args,
            reason=_rate_limit_reason(resolved, name), allowlist=allowlist,
        )  # fmt: skip
        return refused
    return _accepted(pending, allowlist)


def _loop_admission_redis_url() -> str | None:
    """The Redis URL when the cache and the Celery broker are that one Redis, with the
    broker set up the way ``task_message`` mirrors; else None."""
    from voice_platform.celery import app

    config = settings.CACHES["default"]
    location = config.get("LOCATION")
    if (
        settings.TOOL_EXECUTION != "celery"
        or config["BACKEND"] != "django.core.cache.backends.redis.RedisCache"
        or not isinstance(location, str)
        or location != app.conf.broker_url
        or not broker_mirrored(app.conf)
    ):
        return None
    return location


def _task_message(pending: PendingCall) -> bytes:
    from tools.tasks import tool_call_execute_task

    return task_message(
        tool_call_execute_task,
        task_id=pending.task_id,
        kwargs=_task_kwargs(pending),
        queue=settings.TOOL_CELERY_QUEUE,
        kwargsrepr=pending.describe(),
    )


def _task_kwargs(pending: PendingCall) -> dict[str, Any]:
    return {"tenant_id": pending.tenant_id, "call": pending.as_message()}


def _rate_scope(resolved: _Resolved, end_user_id: str) -> str:
    # created_at too: an entry deleted and re-created starts with fresh counters.
    return f"{resolved.entry.pk}:{resolved.entry.created_at.timestamp()}:{end_user_id}"


def _rate_limit_reason(resolved: _Resolved, name: str) -> str:
    return f"rate limit {resolved.rate_limit} exceeded for tool {name!r}"


# A call the model repeats (after a resume on another process, it may ask again) must find
# the first admission, even before that call's row exists (its worker has not started it).
# Long enough to outlive a session's resumption window.
ADMITTED_MARKER_SECONDS = 2 * 3600


def admitted_marker_key(session_ref: str, call_id: str) -> str:
    """The cache key (Django's, unprefixed) that says a call was admitted."""
    digest = hashlib.sha256(f"{session_ref}:{call_id}".encode()).hexdigest()[:32]
    return f"tools:admitted:{digest}"  # hashed: call ids are the model's strings


def _repeat_admission(
    session: VoiceSession, call_id: str, name: str, allowlist: ToolAllowlist | None
) -> Admission:
    """A call admitted before: its row if written, else wait for the first admission's."""
    existing = _record_of(str(session.pk), call_id)
    if existing is not None:
        return _admission_of(existing, allowlist)
    resolved = allowlist.resolve(name) if allowlist is not None else None
    return Admission(
        record=None,
        pending=None,
        allowlist=allowlist,
        accepted=True,
        reason="",
        timeout=resolved.timeout if resolved is not None else settings.TOOL_TIMEOUT_MAX,
        behavior=resolved.behavior if resolved is not None else "BLOCKING",
        scheduling=(resolved.scheduling or None) if resolved is not None else None,
    )


def _pending_call(
    session: VoiceSession, agent: Agent, call_id: str, name: str, resolved: _Resolved,
    validated: dict[str, Any], now: float, window: tuple[str, int, float],
) -> PendingCall:  # fmt: skip
    return PendingCall(
        tenant_id=agent.tenant_id,
        agent_id=agent.pk,
        agent_tool_id=resolved.entry.pk,
        session_id=str(session.pk),
        session_ref=str(session.pk),
        end_user_id=session.end_user_id,
        call_id=call_id,
        tool_name=name[:64],
        is_webhook=resolved.webhook is not None,
        arguments=_cap_arguments(redact_arguments(validated, resolved.sensitive)),
        sealed_arguments=encrypt_str(json.dumps(validated)),
        behavior=resolved.behavior,
        scheduling=resolved.scheduling or "",
        timeout_seconds=resolved.timeout,
        task_id=str(uuid.uuid4()),
        queued_at=now,
        rate_scope=window[0],
        rate_period=window[1],
        rate_now=window[2],
    )


def _accepted(pending: PendingCall, allowlist: ToolAllowlist | None) -> Admission:
    return Admission(
        record=None,
        pending=pending,
        allowlist=allowlist,
        accepted=True,
        reason="",
        timeout=pending.timeout_seconds,
        behavior=pending.behavior,
        scheduling=pending.scheduling or None,
    )


def tool_call_queue_failed(
    *, pending: PendingCall, error: BaseException, allowlist: ToolAllowlist | None = None
) -> Admission:
    """An accepted call the broker refused: written as ``failed`` (the model is told), and
    its rate-limit slot given back (it never ran)."""
    logger.error("tool call %s could not be queued", pending.call_id, exc_info=error)
    rate_limit_refund(scope=pending.rate_scope, period=pending.rate_period, now=pending.rate_now)
    tool_call_finish_early(
        session_ref=pending.session_ref, call_id=pending.call_id, status="failed",
        pending=pending, error=f"could not queue the call: {_describe(error)}",
    )  # fmt: skip
    record = _record_of(pending.session_ref, pending.call_id)
    assert record is not None  # noqa: S101 (written just above, or by a twin)
    return _admission_of(record, allowlist)


def tool_call_refuse(
    *, session: VoiceSession, agent: Agent, call_id: str, name: str, args: dict[str, Any],
    reason: str, allowlist: ToolAllowlist,
) -> Admission:  # fmt: skip
    """Write a refusal decided elsewhere (``tool_call_admit_on_loop``): its one audit row."""
    return _reject(session, agent, call_id, name, dict(args), allowlist.resolve(name), reason,
                   allowlist)  # fmt: skip


def _reject(
    session: VoiceSession, agent: Agent, call_id: str, name: str, args: dict[str, Any],
    resolved: _Resolved | None, reason: str, allowlist: ToolAllowlist,
) -> Admission:  # fmt: skip
    record = ToolCallRecord(
        tenant_id=agent.tenant_id,
        agent=agent,
        session_id=session.pk,
        session_ref=session.pk,
        end_user_id=session.end_user_id,
        call_id=call_id,
        tool_name=name[:64],
        status=Status.REJECTED,
        rejection_reason=reason[:500],
        finished_at=timezone.now(),
    )
    if resolved is None:
        # Unknown tool, unknown sensitivity: keep the argument names only.
        record.arguments = _cap_arguments(redact_arguments(args, args.keys()))
    else:
        record.agent_tool = resolved.entry
        record.is_webhook = resolved.webhook is not None
        record.timeout_seconds = resolved.timeout
        record.behavior = resolved.behavior
        record.scheduling = resolved.scheduling or ""
        record.arguments = _cap_arguments(redact_arguments(args, resolved.sensitive))
    if _insert(record) is None:
        # Already decided (a toolCall redelivered after a resume, or raced): first row wins.
        existing = _record_of(str(session.pk), call_id)
        if existing is None:
            raise IntegrityError(f"tool call {call_id!r}: conflicting row not found")
        return _admission_of(existing, allowlist)
    return _admission_of(record, allowlist)


def _record_of(session_ref: str, call_id: str) -> ToolCallRecord | None:
    found: ToolCallRecord | None = ToolCallRecord.objects.filter(
        session_ref=session_ref, call_id=call_id
    ).first()
    return found


@dataclass(frozen=True)
class _Decision:
    resolved: _Resolved | None
    reason: str  # empty: admitted
    validated: dict[str, Any] | None
    refund: Callable[[], None] | None  # gives the rate-limit slot back
    version: str | None  # the allowlist version read with the rate limit, if asked
    rate_scope: str = ""
    rate_period: int = 0
    rate_now: float = 0.0


def _decide(
    allowlist: ToolAllowlist, name: str, args: dict[str, Any], end_user_id: str, *,
    check_version: bool,
) -> _Decision:  # fmt: skip
    """Allowlisted, valid arguments, policy, rate limit: the first failure is the reason."""
    version_key = allowlist_version_key(allowlist.agent.tenant_id) if check_version else None
    resolved = allowlist.resolve(name)
    reason, validated = (
        (f"tool {name!r} is not allowlisted for this agent", None)
        if resolved is None
        else _check(resolved, args)
    )
    if reason or resolved is None:
        version = allowlist_version(allowlist.agent.tenant_id) if check_version else None
        return _Decision(resolved, reason, None, None, version)
    limit, period = parse_rate_limit(resolved.rate_limit)
    scope, now = _rate_scope(resolved, end_user_id), time.time()
    allowed, seen = rate_limit_consume_and_read(
        scope=scope, limit=limit, period=period, now=now, read=version_key
    )
    version = allowlist_version_of(seen) if check_version else None
    if not allowed:
        return _Decision(resolved, _rate_limit_reason(resolved, name), None, None, version)
    refund = functools.partial(rate_limit_refund, scope=scope, period=period, now=now)
    return _Decision(resolved, "", validated, refund, version, scope, period, now)


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


def _send_task(pending: PendingCall) -> None:
    from tools.tasks import tool_call_execute_task

    publish_task(
        tool_call_execute_task,
        task_id=pending.task_id,
        kwargs=_task_kwargs(pending),
        queue=settings.TOOL_CELERY_QUEUE,
        # What Celery shows of the task in logs, events and monitors: the call, not its
        # contents. (Celery's default, a safe repr of the kwargs, also cost 0.15 ms a call.)
        kwargsrepr=pending.describe(),
    )


_TABLE = ToolCallRecord._meta.db_table
_INSERT_FIELDS = [f for f in ToolCallRecord._meta.concrete_fields if not f.primary_key]
# Every row is written by one INSERT that a twin cannot duplicate: the second of two
# writers for the same (session, call id) inserts nothing and learns it from the empty
# RETURNING, with no exception and no savepoint.
_FIELD_BY_COLUMN = {f.column: f for f in ToolCallRecord._meta.concrete_fields}
_INSERT_COLUMNS = ", ".join(f'"{f.column}"' for f in _INSERT_FIELDS)


def _insert_param(field: Any) -> str:
    """A nullable reference is written only if its row still exists in the call's tenant,
    else NULL: the call may start after its session, agent or allowlist entry was deleted
    (what ``SET_NULL`` does to the rows already there)."""
    if _is_checked_reference(field):
        target = field.related_model._meta.db_table
        return f'(SELECT "id" FROM {target} WHERE "id" = %s AND "tenant_id" = %s)'  # noqa: S608
    return "%s"


def _is_checked_reference(field: Any) -> bool:
    return bool(field.is_relation and field.null)


_INSERT_PARAMS = ", ".join(_insert_param(f) for f in _INSERT_FIELDS)
# Table and column names from the model; values are parameters.
_INSERT_SQL = (
    f"INSERT INTO {_TABLE} ({_INSERT_COLUMNS}) VALUES ({_INSERT_PARAMS}) "  # noqa: S608
    'ON CONFLICT ("session_ref", "call_id") DO NOTHING '
    'RETURNING "id", "agent_id", "agent_tool_id", "session_id"'
)
_RETURNED = ("id", "agent_id", "agent_tool_id", "session_id")
# Starting a call also reads what running it needs, in the same round trip: its allowlist
# entry as it is now and the session's channel. (No table alias: SQLite's RETURNING takes
# none.)
_START_SQL = f"""{_INSERT_SQL},
    (SELECT a.enabled FROM {AgentTool._meta.db_table} a
        WHERE a.id = {_TABLE}.agent_tool_id AND a.tenant_id = {_TABLE}.tenant_id),
    (SELECT a.policy FROM {AgentTool._meta.db_table} a
        WHERE a.id = {_TABLE}.agent_tool_id AND a.tenant_id = {_TABLE}.tenant_id),
    (SELECT a.webhook_tool_id FROM {AgentTool._meta.db_table} a
        WHERE a.id = {_TABLE}.agent_tool_id AND a.tenant_id = {_TABLE}.tenant_id),
    (SELECT s.connection_channel FROM {VoiceSession._meta.db_table} s
        WHERE s.id = {_TABLE}.session_id AND s.tenant_id = {_TABLE}.tenant_id)
"""  # noqa: S608 (as above)


_FINISH_SQL = (
    f'UPDATE {_TABLE} SET "status" = %s, "finished_at" = %s, "queue_ms" = %s, '  # noqa: S608
    '"duration_ms" = %s, "pending_arguments" = %s, "error" = %s, "result" = %s, '
    '"result_preview" = %s WHERE "id" = %s AND "tenant_id" = %s AND "status" = %s'
)


def _execute(sql: str, params: list[Any]) -> tuple[tuple[Any, ...] | None, int]:
    """One statement of a call's critical path: (its first row or None, rows it changed).

    On PostgreSQL, a prepared statement with server-side binding, on the connection Django
    holds (its transaction, its adapters): Django's client-side binding has the server
    parse and plan each statement again, about 0.1 ms a time on this path.
    """
    connection = connections[ToolCallRecord.objects.db]
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return (cursor.fetchone() if cursor.description else None), cursor.rowcount
    import psycopg

    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as raw:
        raw.execute(sql, params, prepare=True)
        return (raw.fetchone() if raw.description else None), raw.rowcount


def _insert(record: ToolCallRecord, sql: str = _INSERT_SQL) -> tuple[Any, ...] | None:
    """INSERT the row unless its (session, call id) exists: the RETURNING row, or None.

    The values are prepared as ``save()`` would; ``save()`` has no ``ON CONFLICT`` and costs
    about 0.2 ms more, on the worker's critical path.
    """
    connection = connections[ToolCallRecord.objects.db]
    values: list[Any] = []
    for model_field in _INSERT_FIELDS:
        value = model_field.pre_save(record, True)
        values.append(model_field.get_db_prep_save(value, connection))
        if _is_checked_reference(model_field):
            values.append(record.tenant_id)
    try:
        row, _ = _execute(sql, values)
    except IntegrityError:
        if connection.in_atomic_block:
            raise
        # A referenced row deleted between our read of it and our commit: read again.
        row, _ = _execute(sql, values)
    if row is not None:
        for name, value in zip(_RETURNED, row, strict=False):
            setattr(record, name, _FIELD_BY_COLUMN[name].to_python(value))
        record._state.adding, record._state.db = False, connection.alias
    return row


def tool_call_start(pending: PendingCall) -> tuple[ToolCallRecord, bool]:
    """(the record, whether this call started it).

    The audit row is written as ``running`` by one INSERT: it is the record and the claim.
    It is a synchronous commit, deliberately: the row must exist before the tool runs, and a
    claim lost in a database crash would let a redelivered task run a call that may have had
    an external effect (a webhook) again. If the row exists already, nothing runs: this task
    was redelivered, the bridge finished the call first (timeout, cancel), or the model
    repeated the call and another task has it. Only that last one gives its rate-limit slot
    back (another task id).
    """
    if pending.tenant_id != current_tenant_id():
        raise PermissionError("the call belongs to another tenant")
    record = pending.record(status=Status.RUNNING.value, started_at=timezone.now())
    row = _insert(record, _START_SQL)
    if row is None:
        existing = _record_of(pending.session_ref, pending.call_id)
        if existing is None:
            raise IntegrityError(f"tool call {pending.call_id!r}: conflicting row not found")
        if existing.celery_task_id != pending.task_id:
            rate_limit_refund(
                scope=pending.rate_scope, period=pending.rate_period, now=pending.rate_now
            )
        return existing, False
    enabled, policy, webhook_tool_id, channel = row[len(_RETURNED) :]
    record.claim_channel = channel or ""  # type: ignore[attr-defined]
    if enabled is None:
        record.agent_tool = None  # the entry was deleted since
    else:
        record.agent_tool = AgentTool(
            pk=pending.agent_tool_id,
            tenant_id=pending.tenant_id,
            enabled=bool(enabled),
            # Django reads jsonb as text and parses it in the field; here that is us.
            policy=json.loads(policy) if isinstance(policy, str) else policy,
            webhook_tool_id=webhook_tool_id,
        )
    return record, True


class _Superseded(Exception):
    """The call was finished by someone else (timeout, cancel) while the tool ran."""


def _elapsed_ms(start: Any, end: Any) -> int | None:
    if start is None or end is None:
        return None
    return max(0, int((end - start).total_seconds() * 1000))


def _preview(result: Any) -> str:
    raw = json.dumps(result, ensure_ascii=False, default=str).encode()
    limit = settings.TOOL_RESULT_MAX_BYTES
    if len(raw) <= limit:
        return raw.decode()
    return raw[:limit].decode(errors="ignore") + "…"


def _finish(
    record: ToolCallRecord, status: str, *, result: Any = None, error: str = ""
) -> dict[str, Any] | None:
    """running -> a finished status: the fields written, or None when the call was finished
    by someone else. ``_apply`` them to the record once they are committed."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "status": status,
        "finished_at": now,
        "queue_ms": _elapsed_ms(record.queued_at, record.started_at),
        "duration_ms": _elapsed_ms(record.started_at, now),
        "pending_arguments": "",
        "error": error[:ERROR_MAX_CHARS],
    }
    if status == Status.SUCCEEDED:
        fields["result"] = result
        fields["result_preview"] = _preview(result)
    connection = connections[ToolCallRecord.objects.db]
    params = [
        fields["status"],
        _field_prep("finished_at", now, connection),
        fields["queue_ms"],
        fields["duration_ms"],
        "",
        fields["error"],
        _field_prep("result", fields.get("result"), connection),
        fields.get("result_preview", ""),
        record.pk,
        current_tenant_id(),
        Status.RUNNING.value,
    ]
    _, changed = _execute(_FINISH_SQL, params)
    return fields if changed else None


def _field_prep(name: str, value: Any, connection: Any) -> Any:
    return _FIELD_BY_COLUMN[name].get_db_prep_save(value, connection)  # name == column here


def _apply(record: ToolCallRecord, written: dict[str, Any] | None) -> None:
    """Make the in-memory record say what was committed, so nobody reads the row back."""
    for name, value in (written or {}).items():
        setattr(record, name, value)


def _invocation(record: ToolCallRecord, sealed_arguments: str) -> Callable[[], Any]:
    """A zero-argument callable that runs the call's tool and returns its result."""
    entry = record.agent_tool
    if entry is None or not entry.enabled:
        raise LookupError(f"tool {record.tool_name!r} is no longer allowlisted for this agent")
    args: dict[str, Any] = json.loads(decrypt_str(sealed_arguments))
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
    # Checked again with the entry as it is now: the session admitted the call against the
    # allowlist it started with, and a policy tightened since then applies at once.
    policy = spec.validate_policy(entry.policy)
    spec.check_policy(validated, policy)
    context = ToolContext(
        # Loaded only if the tool uses them (most need the ids at most): a query each saved.
        tenant=SimpleLazyObject(lambda: record.tenant),
        agent=SimpleLazyObject(lambda: record.agent),
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


class _QueryCount:
    """A Django execute wrapper that counts the statements run inside it."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Callable[..., Any], *args: Any) -> Any:
        self.count += 1
        return execute(*args)


def _run_and_finish(record: ToolCallRecord, invoke: Callable[[], Any]) -> None:
    """Run the tool and write its outcome; the tool's own writes share the transaction.

    A tool that ran no SQL has nothing to commit with its outcome: the transaction was never
    opened on the server (psycopg begins it with the first statement), and the outcome is one
    autocommit write instead of BEGIN, UPDATE, COMMIT.
    """
    queries = _QueryCount()
    written: dict[str, Any] | None = None
    try:
        with tenant_scope(record.tenant_id):  # a new thread starts without the scope
            try:
                with transaction.atomic():
                    with connections[ToolCallRecord.objects.db].execute_wrapper(queries):
                        result = _checked_result(invoke())
                    if queries.count:
                        written = _finish(record, Status.SUCCEEDED, result=result)
                        if written is None:
                            raise _Superseded
                if not queries.count:
                    written = _finish(record, Status.SUCCEEDED, result=result)
                    if written is None:
                        raise _Superseded
            except _Superseded:
                logger.info("tool call %s finished elsewhere; its writes rolled back", record.pk)
            except WebhookTimeout as exc:
                written = _finish(record, Status.TIMEOUT, error=str(exc))
            except Exception as exc:
                # Logged with its traceback here; the model only gets the short form.
                logger.exception("tool %s failed (call %s)", record.tool_name, record.pk)
                written = _finish(record, Status.FAILED, error=_describe(exc))
        _apply(record, written)  # committed by now
    finally:
        connections.close_all()  # this thread's connections only


# A call that ran longer than this reads the session's channel again before the wake-up:
# the session may have resumed on another process meanwhile.
CHANNEL_STALE_SECONDS = 0.05


def tool_call_execute(
    *, pending: PendingCall, notify: Callable[[ToolCallRecord], None] | None = None
) -> ToolCallRecord:
    """Run an accepted call once; idempotent, never raises because of the tool.

    Starting it writes its audit row (``running``); a redelivered task, a repeated call, or
    a call that timed out or was cancelled before it started finds the row there, and runs
    nothing. The tool runs in a thread bounded by the call's timeout; if it overruns, the
    call is marked ``timeout`` and whatever the tool finally returns is discarded (its
    writes are rolled back).

    Once the outcome is written, ``notify`` (default: ``tool_result_notify``, the session's
    current consumer over the channel layer) is told.
    """
    started_at = time.monotonic()
    record, started = tool_call_start(pending)
    if not started:
        if record.is_finished:  # the waiting call may be on a process that never heard
            _notify(record, notify)
        return record
    try:
        invoke = _invocation(record, pending.sealed_arguments)
    except Exception as exc:
        _apply(record, _finish(record, Status.FAILED, error=_describe(exc)))
    else:
        finished = tool_threads.run(
            functools.partial(_run_and_finish, record, invoke), record.timeout_seconds
        )
        if not finished:
            # Python cannot stop the thread; its late result loses the conditional update.
            tool_call_finish_early(
                session_ref=pending.session_ref, call_id=pending.call_id, status="timeout"
            )
            # A fresh object: the overrunning thread may still write to the one it holds.
            return _notify_fresh(record.pk, notify)
    if not record.is_finished:
        return _notify_fresh(record.pk, notify)  # finished by someone else (cancelled)
    if notify is None and time.monotonic() - started_at <= CHANNEL_STALE_SECONDS:
        tool_result_notify(record=record, channel=record.claim_channel)  # type: ignore[attr-defined]
    else:
        _notify(record, notify)
    return record


def _notify(record: ToolCallRecord, notify: Callable[[ToolCallRecord], None] | None) -> None:
    if notify is not None:
        notify(record)
    else:
        tool_result_notify(record=record)


def _notify_fresh(
    record_id: int, notify: Callable[[ToolCallRecord], None] | None
) -> ToolCallRecord:
    record: ToolCallRecord = ToolCallRecord.objects.get(pk=record_id)
    _notify(record, notify)
    return record


def tool_call_finish_early(
    *,
    session_ref: str,
    call_id: str,
    status: Literal["timeout", "cancelled", "failed"],
    pending: PendingCall | None = None,
    error: str = "",
) -> bool:
    """Finish a call that has not finished, as ``status``; True if this changed it.

    A running call's row is updated; a call that has not started is written with ``status``
    from ``pending`` (without it there is nothing to write). Either way the worker, when it
    gets there, finds a finished row and runs nothing. Cancelling also revokes the Celery
    task (not terminating the worker).
    """
    for _ in range(3):  # retried if the call started, or was written, under us
        record = _record_of(session_ref, call_id)
        now = timezone.now()
        if record is None:
            if pending is None:
                return False
            record = pending.record(status=status, finished_at=now)
            record.error = (error or _early_error(record, status))[:ERROR_MAX_CHARS]
            record.queue_ms = _elapsed_ms(record.queued_at, now)
            if _insert(record) is None:
                continue
            changed = True
        elif record.status not in (Status.QUEUED, Status.RUNNING) or status == "failed":
            return False  # finished; or started, and only its own worker fails a started call
        else:
            changed = bool(
                ToolCallRecord.objects.filter(pk=record.pk, status=record.status).update(
                    status=status,
                    finished_at=now,
                    queue_ms=_elapsed_ms(record.queued_at, record.started_at),
                    duration_ms=_elapsed_ms(record.started_at, now),
                    pending_arguments="",
                    error=(error or _early_error(record, status))[:ERROR_MAX_CHARS],
                )
            )
        if changed:
            if status == "cancelled" and record.celery_task_id:
                _revoke(record.celery_task_id)
            return True
    return False


def _early_error(record: ToolCallRecord, status: str) -> str:
    if status == "timeout":
        return f"tool timed out after {record.timeout_seconds:g}s"
    return "cancelled" if status == "cancelled" else "tool failed"


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


def tool_call_outcome(*, record: ToolCallRecord) -> dict[str, Any]:
    """The ``tool.result`` wake-up for a finished call: its status and the model's answer.

    Sent only after the outcome is committed, so it is a copy of what the database says; the
    waiting call uses it instead of reading the row back.
    """
    return {
        "type": "tool.result",
        "record_id": record.pk,
        "call_id": record.call_id,
        "status": record.status,
        "response": tool_call_response(record=record),
    }


def tool_result_notify(*, record: ToolCallRecord, channel: str | None = None) -> None:
    """Wake the consumer that holds the session now (it may have moved to another process);
    ``channel`` if the caller has just read it, else it is read here.

    Only a wake-up: a lost message costs the waiting call at most its poll interval, never
    the result, which it then reads from the database.
    """
    if channel is None:
        channel = (
            VoiceSession.objects.filter(pk=record.session_ref)
            .values_list("connection_channel", flat=True)
            .first()
        )
    if not channel:
        return
    try:
        channel_send_blocking(channel, tool_call_outcome(record=record))
    except Exception:
        logger.warning("tool.result wake-up for call %s not delivered", record.pk, exc_info=True)
