"""/metrics: its guard, its format, the scrape-time queue depth and the label rules."""

from __future__ import annotations

import json
import uuid

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from sessions.protocol_schema import SCHEMA_PATH
from tests.factories import TenantFactory
from voice_platform.celery import app as celery_app
from voice_platform.observability import metric_labels, metrics
from voice_platform.observability.collectors import (
    CeleryQueueDepthCollector,
    scrape_time_collectors,
)
from voice_platform.observability.labels import SessionLabels

TOKEN = "metrics-token-0123456789abcdef"


def families(response) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def test_metrics_answers_404_to_everyone_when_unconfigured(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = []
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_metrics_refuses_a_missing_or_wrong_token(client, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    for header in ("", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x"):
        response = client.get("/metrics", HTTP_AUTHORIZATION=header)
        assert response.status_code == 401, header
        assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert b"voice_" not in response.content


def test_metrics_serves_the_text_format_with_the_token(client, settings):
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    names = families(response)
    assert {"voice_sessions_active", "voice_sessions_started", "voice_event_loop_lag_seconds",
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "gen_ai_execute_tool_duration_seconds"} <= set(names)  # fmt: skip
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


def test_metrics_serves_an_allowed_network_and_refuses_others(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "not-a-cidr"]
    settings.TRUSTED_PROXIES = []
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 401
    # A forwarded address is believed only from a trusted proxy.
    spoofed = client.get("/metrics", REMOTE_ADDR="192.0.2.7", HTTP_X_FORWARDED_FOR="10.1.2.3")
    assert spoofed.status_code == 401
    settings.TRUSTED_PROXIES = ["192.0.2.0/24"]
    proxied = client.get("/metrics", REMOTE_ADDR="192.0.2.7", HTTP_X_FORWARDED_FOR="10.1.2.3")
    assert proxied.status_code == 200


@pytest.mark.django_db
def test_metrics_tenant_label_is_bounded_per_process(settings, monkeypatch):
    monkeypatch.setattr(metric_labels, "_tenants", set())
    settings.METRICS_TENANT_LABEL_LIMIT = 2
    tenants = [TenantFactory() for _ in range(3)]
    labels = ["_other", tenants[0].slug, tenants[2].slug]
    before = {label: calls(label, "succeeded") for label in labels}
    rejected = calls("_other", "rejected")
    for tenant in tenants:
        tenant_labels = SessionLabels(tenant.pk, tenant.slug, None, "s", "m", "TEXT")
        metrics.tool_finished(tenant_labels, name="slow_tool", status="succeeded", seconds=0.1)
    assert calls(tenants[0].slug, "succeeded") == before[tenants[0].slug] + 1
    assert calls("_other", "succeeded") == before["_other"] + 1  # the third tenant
    assert calls(tenants[2].slug, "succeeded") == 0
    assert [metric_labels.tenant_label(t.slug) for t in tenants] == [
        tenants[0].slug, tenants[1].slug, "_other"
    ]  # fmt: skip
    # A refused call is counted, but it never ran: no duration.
    durations = duration_count("slow_tool")
    metrics.tool_finished(tenant_labels, name="slow_tool", status="rejected", seconds=0.0)
    assert calls("_other", "rejected") == rejected + 1
    assert duration_count("slow_tool") == durations


@pytest.mark.django_db
def test_metrics_tenant_labels_listed_are_the_same_in_every_process(settings, monkeypatch):
    monkeypatch.setattr(metric_labels, "_tenants", set())
    settings.METRICS_TENANT_LABEL_LIMIT = 1  # ignored once a list is set
    first, second, third = (TenantFactory() for _ in range(3))
    settings.METRICS_TENANT_LABELS = frozenset({second.slug, third.slug})
    assert [metric_labels.tenant_label(t.slug) for t in (first, second, third)] == [
        "_other", second.slug, third.slug
    ]  # fmt: skip
    assert metric_labels._tenants == set()  # nothing remembered: a restart labels the same


def calls(tenant: str, status: str) -> float:
    labels = {"tenant": tenant, "tool": "slow_tool", "status": status}
    return REGISTRY.get_sample_value("voice_tool_calls_total", labels) or 0.0


def duration_count(tool: str) -> float:
    labels = {"gen_ai_operation_name": "execute_tool", "gen_ai_tool_name": tool}
    name = "gen_ai_execute_tool_duration_seconds_count"
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_label_values_come_from_fixed_sets():
    schema = json.loads(SCHEMA_PATH.read_text())
    reasons = schema["$defs"]["server.session.ended"]["properties"]["reason"]["enum"]
    assert set(reasons) == metric_labels.END_REASONS
    assert metric_labels.end_reason_label("made_up") == "_other"
    cause = metric_labels.reconnect_cause_label
    assert cause("connection_lost") == "connection_lost"
    assert cause("upstream_closed_1011") == "upstream_closed_1011"
    assert cause("upstream_closed_4321") == "upstream_closed_other"
    assert cause("upstream_error_TimeoutError") == "upstream_error_TimeoutError"
    assert cause("upstream_error_SomethingNew") == "upstream_error"
    assert cause("anything else") == "_other"
    assert metric_labels.tool_name_label("slow_tool") == "slow_tool"
    assert metric_labels.tool_name_label("crm_lookup") == "webhook"
    assert metric_labels.tool_status_label("exploded") == "_other"
    assert metric_labels.model_label("my-own-model") == "_other"


def test_metrics_queue_depth_reads_the_tool_queue_on_celery_only(settings):
    if not settings.REDIS_URL:
        pytest.skip("needs a Redis broker (CI has one)")
    queue = f"metrics-test-{uuid.uuid4().hex[:8]}"
    settings.TOOL_CELERY_QUEUE = queue
    settings.TOOL_EXECUTION = "inprocess"
    assert scrape_time_collectors() == []
    settings.TOOL_EXECUTION = "celery"
    (collector,) = scrape_time_collectors()
    assert collector.depth() == 0  # nothing queued yet: no key in Redis at all
    for _ in range(2):  # messages no worker consumes (nobody listens on this queue)
        celery_app.send_task("metrics.test.nothing", queue=queue)
    try:
        (family,) = list(collector.collect())
        assert family.name == "voice_celery_queue_depth"
        assert [(s.labels, s.value) for s in family.samples] == [({"queue": queue}, 2.0)]
    finally:
        with celery_app.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)


def test_metrics_queue_depth_is_left_out_when_the_broker_is_down():
    collector = CeleryQueueDepthCollector("live_tools", broker_url="redis://127.0.0.1:1/0")
    assert list(collector.collect()) == []
