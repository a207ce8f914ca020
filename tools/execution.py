"""Running an accepted call exactly once.

``tool_call_execute`` (a Celery task's body) hands the call to a bounded pool of tool
threads and waits at most the call's timeout; without a broker (the embedded default)
``tool_call_run_inprocess`` hands it to the same pool and the waiting session bounds it.
In the tool thread the call is claimed (``queued -> running``, a conditional
update: a redelivered task, or a call the bridge finished first, claims nothing and runs
nothing), run, and its outcome written in the same transaction as the tool's own writes.
Python cannot stop a thread: a tool that overruns is marked ``timeout``, and its late
result loses the conditional update (its writes roll back). The pool is bounded
(``TOOL_THREADS``, ``tools.pool``), so overrunning tools cannot pile up threads; a call that
waits for a free thread past its timeout is finished as ``timeout`` and never starts. Each
tenant has a share of the threads (``TOOL_THREADS_PER_TENANT``): a call beyond it is
finished as ``failed`` ("busy: ...", the model is told) and never starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from integrations import events as integration_events
from tools.models import ToolCallRecord
from tools.notify import tool_result_notify
from tools.outcome import ERROR_MAX_CHARS, describe_error, elapsed_ms, tool_call_finish_early
from tools.pool import ToolPool, ToolPoolBusy
from tools.registry import ToolContext, get_tool
from tools.webhooks import WebhookTimeout, webhook_post
from voice_platform.crypto import decrypt_str
from voice_platform.observability import log_context
from voice_platform.tenancy.scope import tenant_scope

logger = logging.getLogger(__name__)

Status = ToolCallRecord.Status
Notify = Callable[[ToolCallRecord], None]

_pool_lock = threading.Lock()
_pool: ToolPool | None = None


def tool_pool() -> ToolPool:
    """This process's tool threads (made on first use: a forked worker builds its own)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ToolPool(
                threads=settings.TOOL_THREADS, per_tenant=settings.TOOL_THREADS_PER_TENANT
            )
        return _pool


def tool_call_execute(*, record_id: int, notify: Notify | None = None) -> ToolCallRecord:
    """Run a ``queued`` call once and wake its session (a Celery task's body); idempotent,
    never raises because of the tool. The tool runs in a tool thread, waited for at most the
    call's timeout. ``notify`` replaces the channel-layer wake-up (``tool_result_notify``)."""
    record = _load(record_id)
    with _log_ids(record):
        if record.status == Status.QUEUED:
            try:
                future = tool_pool().submit(record.tenant_id, _claim_run_finish, record)
                wrote = future.result(timeout=record.timeout_seconds)
            except ToolPoolBusy as exc:
                tool_call_finish_early(record=record, status="failed", error=str(exc))
                wrote = False
            except FutureTimeout:
                tool_call_finish_early(record=record, status="timeout")
                wrote = False
            if not wrote:
                # Finished by someone else, or overrunning: a fresh copy (the overrunning
                # thread may still write to the one it holds). Otherwise the record says what
                # committed.
                record = _load(record_id)
        elif record.status == Status.RUNNING:
            _finish_orphan(record)
            record = _load(record_id)
        if record.is_finished:  # a redelivered task too: its session may never have heard
            (notify or _notify)(record)
    return record


def _log_ids(record: ToolCallRecord) -> AbstractContextManager[log_context.LogContext]:
    """The call's ids on every line logged while it is handled. Bound in each thread that
    handles it (the task's, the tool thread): a thread starts with an empty context.
    ``turn_position`` is the conversation position the call answers (``sessions.uplink``),
    not the session's ``turn`` number."""
    return log_context.bound(
        tenant=record.tenant_id, agent=record.agent_id, session=str(record.session_ref),
        turn_position=record.turn, call_id=record.call_id, tool=record.tool_name,
        tool_call=record.pk,
    )  # fmt: skip


# How long past its timeout a running call must be before a redelivered task finishes it:
# its own runner finishes it at its timeout, so a call still running then has no runner.
ORPHAN_GRACE_SECONDS = 5.0
ORPHAN_ERROR = "the process running the call stopped; it may or may not have taken effect"


def _finish_orphan(record: ToolCallRecord) -> None:
    """A redelivered task whose call is ``running``: its worker stopped mid-call (the task
    is ``acks_late``). The call may have had its effect, so it never runs again; once past
    its timeout it is finished as ``timeout`` (a conditional write: a runner that is alive
    after all wins), so it does not stay unfinished and its session hears of it."""
    started = record.started_at or record.queued_at or timezone.now()
    due = started + timedelta(seconds=record.timeout_seconds + ORPHAN_GRACE_SECONDS)
    wait = (due - timezone.now()).total_seconds()
    if wait > 0:
        time.sleep(wait)  # only after a worker died; at most the call's timeout and a grace
    tool_call_finish_early(record=record, status="timeout", error=ORPHAN_ERROR)


def tool_call_run_inprocess(
    *, record: ToolCallRecord, notify: Notify, done: Callable[[], None] | None = None
) -> None:
    """Dispatch an accepted call to this process's tool threads (no broker: the embedded
    default). ``notify`` gets the finished record, from the tool thread.

    The waiting session bounds the call by its timeout (``timeout``; a late result loses
    its conditional update); a call still waiting for a thread by then claims nothing and
    never runs. One thread per call, from the bounded pool; a tenant at its share of the
    pool gets its call finished as ``failed`` (busy) here, without a thread.
    """
    try:
        tool_pool().submit(
            record.tenant_id, _run_inprocess, record.tenant_id, record.pk, notify, done
        )
    except ToolPoolBusy as exc:
        _refuse_busy(record.tenant_id, record.pk, str(exc), notify, done)


def _refuse_busy(
    tenant_id: int, record_id: int, reason: str, notify: Notify, done: Callable[[], None] | None
) -> None:
    """Finish a call the pool had no room for (in the dispatching thread): it never started,
    and its session hears of it like of any outcome."""
    try:
        with tenant_scope(tenant_id):
            record = _load(record_id)  # its own copy: the caller keeps the admission's
            tool_call_finish_early(record=record, status="failed", error=reason)
            record = _load(record_id)
            if record.is_finished:
                notify(record)
    except Exception:
        logger.exception("a busy tool call could not be finished (call %s)", record_id)
    finally:
        if done is not None:
            done()


def _run_inprocess(
    tenant_id: int, record_id: int, notify: Notify, done: Callable[[], None] | None
) -> None:
    try:
        with tenant_scope(tenant_id):  # a tool thread starts without the scope
            record = _load(record_id)  # its own copy: the caller keeps the admission's
            with _log_ids(record):  # ... and without the session's log context
                if record.status == Status.QUEUED and not _claim_run_finish(record):
                    record = _load(record_id)
                if record.is_finished:
                    notify(record)
    except Exception:
        logger.exception("in-process tool execution failed (call %s)", record_id)
    finally:
        connections.close_all()  # this thread's connections (back to the pool)
        if done is not None:
            done()


def _load(record_id: int) -> ToolCallRecord:
    found: ToolCallRecord = ToolCallRecord.objects.select_related("agent_tool__webhook_tool").get(
        pk=record_id
    )
    return found


def _notify(record: ToolCallRecord) -> None:
    tool_result_notify(record=record)


class _Superseded(Exception):
    """The call was finished by someone else (timeout, cancel) while the tool ran."""


def _claim_run_finish(record: ToolCallRecord) -> bool:
    """In a tool thread: claim the call, run the tool, write the outcome; True when this
    wrote the outcome (and ``record`` holds it, committed)."""
    wrote = False
    try:
        with tenant_scope(record.tenant_id), _log_ids(record):
            now = timezone.now()
            claim = {"status": Status.RUNNING, "started_at": now,
                     "queue_ms": elapsed_ms(record.queued_at, now)}  # fmt: skip
            if not ToolCallRecord.objects.filter(pk=record.pk, status=Status.QUEUED).update(
                **claim
            ):
                return False  # finished before it started (timeout, cancel): nothing runs
            _apply(record, claim)
            try:
                invoke = _invocation(record)
            except Exception as exc:
                return _apply(record, _finish(record, Status.FAILED, error=describe_error(exc)))
            try:
                with transaction.atomic():
                    result = _checked_result(invoke())
                    written = _finish(record, Status.SUCCEEDED, result=result)
                    if written is None:
                        raise _Superseded
                wrote = _apply(record, written)  # committed
            except _Superseded:
                logger.info("tool call %s finished elsewhere; its writes rolled back", record.pk)
            except WebhookTimeout as exc:
                wrote = _apply(record, _finish(record, Status.TIMEOUT, error=str(exc)))
            except Exception as exc:
                # Logged with its traceback here; the model only gets the short form.
                logger.exception("tool %s failed (call %s)", record.tool_name, record.pk)
                wrote = _apply(record, _finish(record, Status.FAILED, error=describe_error(exc)))
    finally:
        connections.close_all()  # this thread's connections (back to the pool)
    return wrote


def _finish(
    record: ToolCallRecord, status: str, *, result: Any = None, error: str = ""
) -> dict[str, Any] | None:
    """running -> ``status``: the fields written, or None when the call was finished by
    someone else. ``_apply`` them once they are committed."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "status": status,
        "finished_at": now,
        "duration_ms": elapsed_ms(record.started_at, now),
        "pending_arguments": "",
        "error": error[:ERROR_MAX_CHARS],
    }
    if status == Status.SUCCEEDED:
        fields["result"] = result
        fields["result_preview"] = _preview(result)
    changed = ToolCallRecord.objects.filter(pk=record.pk, status=Status.RUNNING).update(**fields)
    if changed:
        integration_events.tool_call_finished(tenant_id=record.tenant_id, record_id=record.pk)
    return fields if changed else None


def _apply(record: ToolCallRecord, written: dict[str, Any] | None) -> bool:
    for name, value in (written or {}).items():
        setattr(record, name, value)
    return written is not None


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
        # The same for every attempt at the same request (a re-ask, a retry); in the signed
        # body too, so a replayed request cannot carry another one.
        key = (
            record.idempotency_key
            or hashlib.sha256(f"{record.session_ref}:{record.call_id}".encode()).hexdigest()
        )
        payload = {
            "idempotency_key": key,
            "call_id": record.call_id,
            "tool": webhook.name,
            "arguments": args,
            "agent_id": record.agent_id,
            "session_id": str(record.session_ref),
            "end_user_id": record.end_user_id,
        }
        secret = decrypt_str(webhook.secret_encrypted)
        url, timeout = webhook.url, record.timeout_seconds
        return lambda: webhook_post(
            url=url, secret=secret, payload=payload, timeout=timeout, idempotency_key=key
        )
    spec = get_tool(record.tool_name)
    if spec is None:
        raise LookupError(f"tool {record.tool_name!r} is not available")
    validated = spec.validate_args(args)
    # Checked again with the entry as it is now: the session admitted the call against the
    # allowlist it had, and a policy tightened since then applies at once.
    policy = spec.validate_policy(entry.policy)
    spec.check_policy(validated, policy)
    context = ToolContext(
        # Loaded only if the tool uses them (most need the ids at most).
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
    if len(json.dumps(safe).encode()) > settings.TOOL_WEBHOOK_MAX_RESPONSE_BYTES:
        raise ValueError(f"result larger than {settings.TOOL_WEBHOOK_MAX_RESPONSE_BYTES} bytes")
    return safe


def _preview(result: Any) -> str:
    raw = json.dumps(result, ensure_ascii=False, default=str).encode()
    limit = settings.TOOL_RESULT_MAX_BYTES
    if len(raw) <= limit:
        return raw.decode()
    return raw[:limit].decode(errors="ignore") + "…"
