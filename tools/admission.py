"""Deciding a function call the model asked for, and writing its audit row.

Checked in order: allowlisted (enabled, present in code); arguments against the schema;
the agent's policy; the per-end-user rate limit. The row is written in one transaction:
``rejected`` for a refused call, ``queued`` for an accepted one, which is dispatched once
that transaction commits (``transaction.on_commit``, so a worker always finds the row):
``tool_call_enqueue`` sends its Celery task, ``tool_call_run_inprocess`` (no broker, the
embedded default) hands it to this process's tool threads.

A request admitted before (its idempotency key has a row: the model asked again after a
reconnect) meets the key's unique index: nothing is written or run, and the first call's
row comes back (``repeat``). The re-ask was counted against the rate limit like any call.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any

import jsonschema
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations import events as integration_events
from tools.allowlist import ResolvedTool, ToolAllowlist
from tools.idempotency import tool_call_key
from tools.models import ToolCallRecord
from tools.outcome import describe_error, tool_call_by_key, tool_call_finish_early
from tools.ratelimit import rate_limit_consume
from tools.registry import PolicyViolation, ToolArgumentError, parse_rate_limit, redact_arguments
from tools.tasks import tool_call_execute_task
from voice_platform.crypto import encrypt_str

logger = logging.getLogger(__name__)

Status = ToolCallRecord.Status


@dataclass(frozen=True)
class ToolCallRequest:
    """One function call of the model, as the live session knows it."""

    tenant_id: int
    session_id: uuid.UUID
    end_user_id: str
    call_id: str
    name: str
    args: Mapping[str, Any]
    turn: int  # the conversation position of the turn it answers (``tools.idempotency``)
    occurrence: int = 0

    @cached_property
    def key(self) -> str:
        return tool_call_key(
            session_ref=str(self.session_id), turn=self.turn, name=self.name, args=self.args,
            occurrence=self.occurrence,
        )  # fmt: skip


@dataclass(frozen=True)
class Admission:
    """What admission decided: the call's row (``rejected``, ``queued``, or, for a re-ask,
    whatever the first call's row says now) and the allowlist it was decided against."""

    record: ToolCallRecord
    allowlist: ToolAllowlist
    repeat: bool  # the request was admitted before: this wrote nothing


Dispatch = Callable[[ToolCallRecord], None]


def tool_call_admit(
    *, request: ToolCallRequest, allowlist: ToolAllowlist, dispatch: Dispatch | None
) -> Admission:
    """Decide ``request`` against ``allowlist`` (reloaded here if an entry changed since);
    an accepted call goes to ``dispatch`` once its row is committed."""
    allowlist = allowlist.current()
    resolved = allowlist.resolve(request.name)
    reason, validated = _check(resolved, request.name, dict(request.args))
    if not reason and resolved is not None and not _within_rate_limit(resolved, request):
        reason = f"rate limit {resolved.rate_limit} exceeded for tool {request.name!r}"
    record = _record(request, allowlist, resolved, reason, validated)
    try:
        with transaction.atomic():  # a savepoint inside the caller's transaction, if any
            record.save(force_insert=True)
    except IntegrityError:
        # Admitted by a twin in the meantime, or the model's call id came again (a
        # redelivered toolCall) in another turn: either way that row answers.
        twin = tool_call_by_key(request.key) or _by_call_id(request)
        if twin is None:
            raise
        return Admission(record=twin, allowlist=allowlist, repeat=True)
    if reason:  # refused: final already
        integration_events.tool_call_finished(tenant_id=record.tenant_id, record_id=record.pk)
    if dispatch is not None and not reason:
        # Once the row is committed (now, or with the caller's transaction): a worker always
        # finds it, and a session that goes away meanwhile cannot strand it ``queued``.
        transaction.on_commit(partial(dispatch, record))
    return Admission(record=record, allowlist=allowlist, repeat=False)


def _by_call_id(request: ToolCallRequest) -> ToolCallRecord | None:
    found: ToolCallRecord | None = ToolCallRecord.objects.filter(
        session_ref=request.session_id, call_id=storable_text(request.call_id)
    ).first()
    return found


def _within_rate_limit(resolved: ResolvedTool, request: ToolCallRequest) -> bool:
    limit, period = parse_rate_limit(resolved.rate_limit)
    scope = f"{resolved.rate_scope_prefix}:{request.end_user_id}"
    return rate_limit_consume(scope=scope, limit=limit, period=period, now=time.time())


def tool_call_enqueue(record: ToolCallRecord) -> None:
    """Dispatch to a Celery worker; a broker that refuses the task fails the call
    (``failed``, and the model is told)."""
    try:
        tool_call_execute_task.apply_async(
            kwargs={"tenant_id": record.tenant_id, "record_id": record.pk},
            task_id=record.celery_task_id,
            queue=settings.TOOL_CELERY_QUEUE,
        )
    except Exception as exc:
        logger.error("tool call %s could not be queued", record.pk, exc_info=exc)
        tool_call_finish_early(
            record=record, status="failed", error=f"could not queue the call: {describe_error(exc)}"
        )


def _record(
    request: ToolCallRequest,
    allowlist: ToolAllowlist,
    resolved: ResolvedTool | None,
    reason: str,
    validated: dict[str, Any] | None,
) -> ToolCallRecord:
    now = timezone.now()
    args = dict(request.args)
    record = ToolCallRecord(
        tenant_id=request.tenant_id,
        agent_id=allowlist.agent.pk,
        session_id=request.session_id,
        session_ref=request.session_id,
        end_user_id=request.end_user_id,
        call_id=storable_text(request.call_id),
        tool_name=storable_text(request.name)[:64],
        idempotency_key=request.key,
        turn=request.turn,
        celery_task_id=str(uuid.uuid4()),
        queued_at=now,
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
        record.arguments = _cap_arguments(redact_arguments(validated or args, resolved.sensitive))
    if reason:
        record.status = Status.REJECTED
        record.rejection_reason = storable_text(reason)[:500]
        record.finished_at = now
    else:
        record.status = Status.QUEUED
        record.pending_arguments = encrypt_str(json.dumps(validated))
    return record


def _cap_arguments(args: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments as stored in the audit: JSON-safe and bounded."""
    safe: dict[str, Any] = _storable(json.loads(json.dumps(dict(args), default=str)))
    if len(json.dumps(safe).encode()) > settings.TOOL_WEBHOOK_MAX_RESPONSE_BYTES:
        return {"_truncated": True, "names": sorted(safe)}
    return safe


def _check(
    resolved: ResolvedTool | None, name: str, args: dict[str, Any]
) -> tuple[str, dict[str, Any] | None]:
    """(reason, validated arguments as JSON); an empty reason means admitted so far."""
    if resolved is None:
        return f"tool {name!r} is not allowlisted for this agent", None
    unstorable = _unstorable_at(args)
    if unstorable is not None:
        return (
            f"invalid argument {unstorable!r}: text may not contain NUL characters or lone "
            "UTF-16 surrogates"
        ), None
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
    validator = jsonschema.Draft202012Validator(resolved.webhook.parameters_schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(args))
    if error is None:
        return "", args
    loc = ".".join(str(part) for part in error.absolute_path)
    if loc:
        return f"invalid argument {loc!r}: {error.message}", None
    return f"invalid arguments: {error.message}", None


# A lone UTF-16 surrogate (JSON's unpaired "\\udXXX" escape) has no UTF-8 form, and NUL is
# refused by PostgreSQL in text and jsonb: the model can produce both (JSON allows the
# escapes), and neither the audit row nor a tool's own writes could store them.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str) -> str:
    """``text`` as the audit stores it: NUL and lone surrogates replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


def _storable(value: Any) -> Any:
    """A JSON value as jsonb takes it: every string (keys too) storable, and the non-finite
    numbers Python's JSON reads (``NaN``, ``Infinity``), which jsonb refuses, as text."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_storable(item) for item in value]
    if isinstance(value, dict):
        return {storable_text(key): _storable(item) for key, item in value.items()}
    return value


def _unstorable_at(args: Mapping[str, Any]) -> str | None:
    """The argument holding text PostgreSQL cannot store (at any depth), or None.

    Refused rather than cleaned: a call is what the model asked for, and a changed recipient
    or key would be another request. (A user's own text is cleaned at the WebSocket edge.)
    """
    stack: list[tuple[str, Any]] = [(str(key), value) for key, value in args.items()]
    stack += [(str(key), key) for key in args]
    while stack:
        name, item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return storable_text(name)
        elif isinstance(item, Mapping):
            stack.extend((name, key) for key in item)
            stack.extend((name, value) for value in item.values())
        elif isinstance(item, list):
            stack.extend((name, value) for value in item)
    return None
