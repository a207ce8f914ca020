"""Error-rate alerts: a rolling window per agent and per tenant (docs/alerts.md).

Outcomes are those that finished within the last ``ALERT_WINDOW_SECONDS``:

- sessions that ended (``ended``: a success, ``failed``: a failure), by ``ended_at``;
- tool calls that ran (``succeeded``: a success, ``failed`` or ``timeout``: a failure), by
  ``finished_at``. Refused (``rejected``) and ``cancelled`` calls are not outcomes: a
  refusal is the platform's policy working (a user hammering a rate limit must not page
  anyone) and a cancellation is the session going away.

With at least ``ALERT_MIN_EVENTS`` outcomes and a failure rate of at least
``ALERT_ERROR_RATE`` an agent's scope (``agent:<id>``) raises one ``Alert``. The tenant's
scope (``tenant``: failures spread over agents too quiet to alert alone) counts the
outcomes of the agents whose own scope is not covered, by an open alert or a cooldown, so
one incident is one alert. An open alert follows the rate (``last_error_rate``,
``peak_error_rate``) and clears once the window has at least the minimum of outcomes and a
rate below ``ALERT_CLEAR_RATE`` (hysteresis), or holds no failure at all (traffic
stopped). A scope whose alert cleared is not raised again for ``ALERT_COOLDOWN_SECONDS``.

Every server process evaluates (``voice_platform.periodic``): the partial unique constraint
(one open alert per tenant, scope and kind) lets one process win a raise, and a clear is a
conditional update one process wins; only the winner logs and sends the webhook.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from analytics.alert_webhooks import (
    CLEARED,
    RAISED,
    alert_deliver_later,
    alert_deliveries_due,
)
from analytics.models import Alert
from integrations import events as integration_events
from sessions.models import VoiceSession
from tools.models import ToolCallRecord
from voice_platform.tenancy.models import Tenant
from voice_platform.tenancy.scope import tenant_scope

log = logging.getLogger(__name__)

KIND = "error_rate"
TENANT_SCOPE = "tenant"
# The indexes lead with the tenant and a start time ((tenant, started_at) on sessions,
# (tenant, created_at) on tool calls); none has the end time. So each query bounds the start
# time too, which makes it an index range scan over one tenant's recent rows, not all its
# history, then filters on the end time. The bounds are how long an outcome can take: a
# session lasts at most an agent's max_session_seconds (a day at most) plus resumes; a tool
# call its timeout (TOOL_TIMEOUT_MAX) plus its queue time, or until the stranded-call sweep
# finishes it. Outcomes older than that at their end are not counted (docs/alerts.md).
SESSION_LOOKBACK = timedelta(hours=26)
TOOL_CALL_LOOKBACK = timedelta(hours=1)
SESSION_FAILURES = (VoiceSession.Status.FAILED,)
TOOL_CALL_OUTCOMES = (
    ToolCallRecord.Status.SUCCEEDED,
    ToolCallRecord.Status.FAILED,
    ToolCallRecord.Status.TIMEOUT,
)
TOOL_CALL_FAILURES = (ToolCallRecord.Status.FAILED, ToolCallRecord.Status.TIMEOUT)

Deliver = Callable[[int, int, str], object]  # (tenant id, alert id, event)


@dataclass(frozen=True)
class Window:
    """Outcomes in the window: how many, and how many failed."""

    events: int = 0
    failures: int = 0

    @property
    def rate(self) -> float:
        return self.failures / self.events if self.events else 0.0

    def __add__(self, other: Window) -> Window:
        return Window(self.events + other.events, self.failures + other.failures)

    def over_threshold(self) -> bool:
        return self.events >= settings.ALERT_MIN_EVENTS and self.rate >= settings.ALERT_ERROR_RATE

    def recovered(self) -> bool:
        if self.failures == 0:
            return True
        return self.events >= settings.ALERT_MIN_EVENTS and self.rate < settings.ALERT_CLEAR_RATE


@dataclass
class Evaluation:
    """What one round did (for tests and the log)."""

    raised: list[Alert] = field(default_factory=list)
    cleared: list[Alert] = field(default_factory=list)
    updated: list[Alert] = field(default_factory=list)


def agent_scope(agent_id: int) -> str:
    return f"agent:{agent_id}"


def outcome_windows(*, tenant: Tenant, now: datetime) -> dict[int | None, Window]:
    """Each agent's window (key None: agents deleted since), two grouped queries."""
    since = now - timedelta(seconds=settings.ALERT_WINDOW_SECONDS)
    sessions = (
        VoiceSession.objects.filter(
            tenant=tenant,
            started_at__gte=since - SESSION_LOOKBACK,  # the index range (see SESSION_LOOKBACK)
            ended_at__gte=since,
            ended_at__lte=now,
            status__in=(VoiceSession.Status.ENDED, VoiceSession.Status.FAILED),
        )
        .order_by()
        .values("agent_id")
        .annotate(events=Count("pk"), failures=Count("pk", filter=Q(status__in=SESSION_FAILURES)))
    )
    calls = (
        ToolCallRecord.objects.filter(
            tenant=tenant,
            created_at__gte=since - TOOL_CALL_LOOKBACK,  # the index range
            finished_at__gte=since,
            finished_at__lte=now,
            status__in=TOOL_CALL_OUTCOMES,
        )
        .order_by()
        .values("agent_id")
        .annotate(events=Count("pk"), failures=Count("pk", filter=Q(status__in=TOOL_CALL_FAILURES)))
    )
    windows: dict[int | None, Window] = {}
    for row in [*sessions, *calls]:
        key = row["agent_id"]
        windows[key] = windows.get(key, Window()) + Window(row["events"], row["failures"])
    return windows


def open_alerts(*, tenant: Tenant) -> dict[str, Alert]:
    return {
        alert.scope: alert
        for alert in Alert.objects.filter(
            tenant=tenant, kind=KIND, status=Alert.Status.OPEN
        ).select_related("tenant")
    }


def cooling_scopes(*, tenant: Tenant, now: datetime) -> set[str]:
    """Scopes whose alert cleared within the cooldown: not raised again yet."""
    since = now - timedelta(seconds=settings.ALERT_COOLDOWN_SECONDS)
    return set(
        Alert.objects.filter(
            tenant=tenant, kind=KIND, status=Alert.Status.CLEARED, cleared_at__gte=since
        ).values_list("scope", flat=True)
    )


def alert_raise(
    *, tenant: Tenant, scope: str, agent_id: int | None, window: Window, now: datetime
) -> Alert | None:
    """Insert the scope's open alert; None when another process already has (the partial
    unique constraint: that process logs it and sends its webhook)."""
    rate = window.rate
    try:
        with transaction.atomic():  # a savepoint: the violation must not end the caller's
            alert: Alert = Alert.objects.create(
                tenant=tenant,
                agent_id=agent_id,
                scope=scope,
                kind=KIND,
                status=Alert.Status.OPEN,
                raised_at=now,
                window_seconds=settings.ALERT_WINDOW_SECONDS,
                threshold=settings.ALERT_ERROR_RATE,
                events=window.events,
                failures=window.failures,
                error_rate=rate,
                peak_error_rate=rate,
                last_error_rate=rate,
            )
    except IntegrityError:
        return None
    log.error(
        "error-rate alert raised: tenant %s, %s, %.0f%% failed (%d of %d outcomes in %ds)",
        tenant.slug, scope, rate * 100, window.failures, window.events,
        settings.ALERT_WINDOW_SECONDS,
    )  # fmt: skip
    return alert


def alert_follow(*, alert: Alert, window: Window, now: datetime) -> bool:
    """Clear ``alert`` if the window recovered, else record its rate. True when this call
    cleared it (a conditional update: one process wins)."""
    still_open = Alert.objects.filter(pk=alert.pk, status=Alert.Status.OPEN)
    if not window.recovered():
        still_open.update(
            last_error_rate=window.rate,
            peak_error_rate=Greatest(F("peak_error_rate"), window.rate),
        )
        return False
    if not still_open.update(
        status=Alert.Status.CLEARED, cleared_at=now, last_error_rate=window.rate
    ):
        return False
    log.warning(
        "error-rate alert cleared: tenant %s, %s, now %.0f%% failed (%d of %d outcomes)",
        alert.tenant.slug, alert.scope, window.rate * 100, window.failures, window.events,
    )  # fmt: skip
    return True


def _scope_step(
    *,
    tenant: Tenant,
    scope: str,
    agent_id: int | None,
    window: Window,
    alert: Alert | None,
    cooling: bool,
    now: datetime,
    send: Deliver,
    result: Evaluation,
) -> bool:
    """Raise, follow or clear one scope's alert. True when the scope is covered (an open
    alert, raised by this process or another, or a cooldown): its outcomes then stay out of
    the tenant's scope, so one incident never raises a second alert there."""
    if alert is not None:
        if alert_follow(alert=alert, window=window, now=now):
            alert.status = Alert.Status.CLEARED
            result.cleared.append(alert)
            send(tenant.pk, alert.pk, CLEARED)
            integration_events.alert_changed(
                tenant_id=tenant.pk, alert_id=alert.pk, event_type=CLEARED
            )
        else:
            result.updated.append(alert)
        return True
    if cooling or not window.over_threshold():
        return cooling
    raised = alert_raise(tenant=tenant, scope=scope, agent_id=agent_id, window=window, now=now)
    if raised is not None:
        result.raised.append(raised)
        send(tenant.pk, raised.pk, RAISED)
        integration_events.alert_changed(tenant_id=tenant.pk, alert_id=raised.pk, event_type=RAISED)
    return True  # None: another process raised it just now


def alerts_evaluate_tenant(
    *, tenant: Tenant, now: datetime, deliver: Deliver | None = None
) -> Evaluation:
    """One round for one tenant (inside its scope): retries of due deliveries, each agent's
    scope, then the tenant's over the outcomes of agents not covered by an alert."""
    result = Evaluation()
    send: Deliver = deliver or alert_deliver_later
    # Retries first: what this round raises or clears is sent below, once.
    for alert_id, event in alert_deliveries_due(tenant=tenant, now=now):
        send(tenant.pk, alert_id, event)

    windows = outcome_windows(tenant=tenant, now=now)
    current = open_alerts(tenant=tenant)
    cooling = cooling_scopes(tenant=tenant, now=now)
    agents: dict[int, Window] = {key: w for key, w in windows.items() if key is not None}
    for scope, open_alert in current.items():
        if scope != TENANT_SCOPE and open_alert.agent_id is not None:
            agents.setdefault(open_alert.agent_id, Window())  # no outcomes left: may clear
    # Outcomes of agents deleted since count for the tenant only.
    rest = windows.get(None, Window())
    for agent_id, window in agents.items():
        scope = agent_scope(agent_id)
        covered = _scope_step(
            tenant=tenant, scope=scope, agent_id=agent_id, window=window,
            alert=current.pop(scope, None), cooling=scope in cooling, now=now, send=send,
            result=result,
        )  # fmt: skip
        if not covered:
            rest += window
    # The tenant's own alert, and agent alerts whose agent was deleted (no outcomes left).
    for scope, alert in current.items():
        window = rest if scope == TENANT_SCOPE else Window()
        _scope_step(
            tenant=tenant, scope=scope, agent_id=alert.agent_id, window=window, alert=alert,
            cooling=False, now=now, send=send, result=result,
        )  # fmt: skip
    if TENANT_SCOPE not in current:
        _scope_step(
            tenant=tenant, scope=TENANT_SCOPE, agent_id=None, window=rest, alert=None,
            cooling=TENANT_SCOPE in cooling, now=now, send=send, result=result,
        )  # fmt: skip
    return result


def alerts_evaluate(
    *, now: datetime | None = None, deliver: Deliver | None = None
) -> dict[int, Evaluation]:
    """One round over every tenant (a suspended one's open alerts still clear); per tenant
    id, what it did. Two indexed queries per tenant, plus a few on its alerts."""
    now = now or timezone.now()
    results: dict[int, Evaluation] = {}
    for tenant in Tenant.objects.order_by("pk"):
        with tenant_scope(tenant.pk):
            results[tenant.pk] = alerts_evaluate_tenant(tenant=tenant, now=now, deliver=deliver)
    return results


def evaluate_all() -> None:
    """The periodic job (registered ``shared``: one process per interval runs a round;
    correctness does not depend on that, only the work saved)."""
    alerts_evaluate()
