"""/metrics: off without a token, bearer-protected, django-prometheus' series and
MemoryWeb's own, and no label that names a tenant, key, agent or memory."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "s3cret-metrics-token"
#: Label names the exposition may carry: all bounded.
ALLOWED_LABELS = {"operation", "outcome", "mode", "op", "job", "le", "method", "view", "status",
                  "vendor", "alias", "type", "backend", "transport", "code", "quantile",
                  "implementation", "version", "major", "minor", "patchlevel", "name", "generation",
                  "cache", "templatename", "charset", "streaming",
                  # The gateway's (apps/gateway/metrics.py), each a fixed list: the route's
                  # API, a fail-open reason, the extractor, how a fact was promoted, the
                  # learning stage that failed. Their values are still checked below.
                  "route", "reason", "extractor", "how", "stage"}


@pytest.fixture
def scrape(settings):
    settings.MEMORYWEB_METRICS_TOKEN = TOKEN

    def get() -> dict[str, list]:
        response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain")
        return {family.name: family.samples
                for family in text_string_to_metric_families(response.content.decode())}

    return get


def _value(samples, name: str, **labels) -> float:
    return sum(s.value for s in samples if s.name == name
               and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_are_off_without_a_token(client, db, settings):
    settings.MEMORYWEB_METRICS_TOKEN = ""
    response = client.get("/metrics")
    assert response.status_code == 404 and "MEMORYWEB_METRICS_TOKEN" in response.json()["error"]["message"]


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_metrics_need_the_bearer_token(client, db, settings, header):
    settings.MEMORYWEB_METRICS_TOKEN = TOKEN
    response = client.get("/metrics", **({"HTTP_AUTHORIZATION": header} if header else {}))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"memoryweb_" not in response.content


def test_series_move_with_operations(scrape, agent, reader, outsider):
    before = scrape()
    agent.post("/api/v1/memories", {"content": "The metrics test memory one."})
    agent.post("/api/v1/memories/batch", {"memories": [{"content": "two"}, {"content": "three"}]})
    outsider.post("/api/v1/memories", {"content": "Another tenant writes too."})
    reader.post("/api/v1/recall", {"query": "metrics test", "mode": "lexical"})
    reader.post("/api/v1/recall", {"query": "metrics test"})
    after = scrape()

    def grew(family: str, name: str, **labels) -> float:
        return _value(after[family], name, **labels) - _value(before.get(family, []), name, **labels)

    assert grew("memoryweb_operations", "memoryweb_operations_total", operation="ingest", outcome="ok") == 3
    assert grew("memoryweb_memories_stored", "memoryweb_memories_stored_total") == 4
    assert grew("memoryweb_recalls", "memoryweb_recalls_total", mode="lexical") == 1
    assert grew("memoryweb_recalls", "memoryweb_recalls_total", mode="hybrid") == 1
    assert grew("memoryweb_operation_seconds", "memoryweb_operation_seconds_count", operation="recall") == 2
    assert grew("memoryweb_embedded_texts", "memoryweb_embedded_texts_total") >= 4
    assert grew("memoryweb_embedding_seconds", "memoryweb_embedding_seconds_count") >= 3
    assert _value(after["memoryweb_outbox_backlog"], "memoryweb_outbox_backlog") == 0
    for family in ("django_http_requests_total_by_method", "django_http_responses_total_by_status",
                   "django_db_execute", "memoryweb_websocket_connections", "memoryweb_job_runs"):
        assert family in after, family
    assert grew("django_http_requests_total_by_method", "django_http_requests_total_by_method_total",
                method="POST") == 5


def test_refusals_are_counted_apart_from_errors(scrape, reader):
    def count(outcome: str) -> float:
        return _value(scrape().get("memoryweb_operations", []), "memoryweb_operations_total",
                      operation="ingest", outcome=outcome)

    refused, errors = count("refused"), count("error")
    assert reader.post("/api/v1/memories", {"content": "readers cannot write"}).status_code == 403
    assert (count("refused") - refused, count("error") - errors) == (1, 0)


def test_job_state_is_exposed_by_the_web_process(scrape, db):
    from apps.ops.jobs import run_job, set_paused

    run_job("drain_outbox")
    set_paused("expire_memories", True, by="test")
    samples = scrape()
    assert _value(samples["memoryweb_job_recorded_runs"], "memoryweb_job_recorded_runs",
                  job="drain_outbox") == 1
    assert _value(samples["memoryweb_job_paused"], "memoryweb_job_paused", job="expire_memories") == 1
    assert _value(samples["memoryweb_job_last_finished_timestamp_seconds"],
                  "memoryweb_job_last_finished_timestamp_seconds", job="drain_outbox") > 1.7e9


def test_no_label_names_a_tenant_key_agent_or_memory(scrape, agent, outsider, alpha, beta):
    stored = agent.post("/api/v1/memories", {"content": "Label cardinality check."}).json()
    outsider.post("/api/v1/memories", {"content": "Other tenant."})
    agent.get(f"/api/v1/memories/{stored['id']}")
    secrets = {alpha.slug, beta.slug, stored["id"], "agent-1", agent.key.prefix, outsider.key.prefix}
    for name, samples in scrape().items():
        for sample in samples:
            assert set(sample.labels) <= ALLOWED_LABELS, (name, sample.labels)
            for value in sample.labels.values():
                assert not any(secret in value for secret in secrets), (name, sample.labels)


def test_index_errors_and_backlog_are_counted(scrape, agent, chroma_server):
    before = _value(scrape().get("memoryweb_index_errors", []), "memoryweb_index_errors_total",
                    op="upsert")
    chroma_server.stop()
    assert agent.post("/api/v1/memories", {"content": "Written while Chroma is down."}).status_code == 201
    after = scrape()
    assert _value(after["memoryweb_index_errors"], "memoryweb_index_errors_total", op="upsert") == before + 1
    assert _value(after["memoryweb_outbox_backlog"], "memoryweb_outbox_backlog") == 1
