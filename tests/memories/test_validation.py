"""Bad input gets a 4xx JSON error naming the problem, and changes nothing."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from apps.memories.models import IndexOutbox, Memory, MemoryVersion

LIMITS = settings.MEMORYWEB_LIMITS


def _assert_error(response, status: int, field: str | None = None, code: str | None = None):
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["message"]
    if field is not None:
        assert error.get("field") == field, error
    if code is not None:
        assert error["code"] == code, error
    return error


def _nothing_stored():
    return Memory.objects.count() == 0 and IndexOutbox.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "content"),
        ({"content": ""}, "content"),
        ({"content": "   "}, "content"),
        ({"content": 42}, "content"),
        ({"content": "x" * (LIMITS["max_content_bytes"] + 1)}, "content"),
        ({"content": "é" * (LIMITS["max_content_bytes"] // 2 + 1)}, "content"),  # bytes, not chars
        ({"content": "ok", "kind": "gossip"}, "kind"),
        ({"content": "ok", "importance": 1.5}, "importance"),
        ({"content": "ok", "confidence": -0.1}, "confidence"),
        ({"content": "ok", "tags": "not-a-list"}, "tags"),
        ({"content": "ok", "tags": [f"t{i}" for i in range(LIMITS["max_tags"] + 1)]}, "tags"),
        ({"content": "ok", "tags": ["x" * (LIMITS["max_tag_length"] + 1)]}, "tags[0]"),
        ({"content": "ok", "metadata": [1, 2]}, "metadata"),
        ({"content": "ok", "metadata": {"blob": "x" * LIMITS["max_metadata_bytes"]}}, "metadata"),
        ({"content": "ok", "session_id": "s" * (LIMITS["max_id_length"] + 1)}, "session_id"),
        ({"content": "ok", "expires_at": "tomorrow"}, "expires_at"),
        ({"content": "ok", "valid_from": "2026-01-02T00:00:00Z", "valid_until": "2026-01-01T00:00:00Z"},
         "valid_until"),
        ({"content": "ok", "agent_id": "spoofed"}, "agent_id"),
        ({"content": "ok", "colour": "blue"}, "colour"),
    ],
)
def test_invalid_memory_is_rejected_and_nothing_stored(agent, body, field):
    _assert_error(agent.post("/api/v1/memories", body), 400, field)
    assert _nothing_stored()


def test_agent_id_in_body_names_the_reason(agent):
    error = _assert_error(agent.post("/api/v1/memories", {"content": "x", "agent_id": "a"}), 400)
    assert "API key" in error["message"]


def test_content_at_the_limit_is_accepted(agent):
    response = agent.post("/api/v1/memories", {"content": "x" * LIMITS["max_content_bytes"]})
    assert response.status_code == 201


def test_batch_over_limit_is_rejected(agent):
    body = {"memories": [{"content": f"m{i}"} for i in range(LIMITS["max_batch"] + 1)]}
    _assert_error(agent.post("/api/v1/memories/batch", body), 400, "memories", "too_many")
    assert _nothing_stored()


def test_batch_at_limit_is_accepted(agent):
    body = {"memories": [{"content": f"memory number {i}"} for i in range(LIMITS["max_batch"])]}
    response = agent.post("/api/v1/memories/batch", body)
    assert response.status_code == 201
    assert response.json()["count"] == LIMITS["max_batch"]
    assert Memory.objects.count() == LIMITS["max_batch"]


def test_batch_is_all_or_nothing(agent):
    items = [{"content": f"good {i}"} for i in range(10)]
    items[5] = {"content": ""}
    _assert_error(agent.post("/api/v1/memories/batch", {"memories": items}), 400, "memories[5].content")
    assert _nothing_stored()


def test_empty_batch_is_rejected(agent):
    _assert_error(agent.post("/api/v1/memories/batch", {"memories": []}), 400, "memories")


def test_batch_item_not_an_object(agent):
    _assert_error(agent.post("/api/v1/memories/batch", {"memories": ["text"]}), 400, "memories[0]")
    assert _nothing_stored()


def test_body_over_limit_is_413(agent):
    big = json.dumps({"content": "x" * (LIMITS["max_body_bytes"] + 10)})
    response = agent.client.post("/api/v1/memories", big, content_type="application/json")
    _assert_error(response, 413, code="payload_too_large")
    assert _nothing_stored()


def test_malformed_json_is_400(agent):
    response = agent.client.post("/api/v1/memories", "{not json", content_type="application/json")
    _assert_error(response, 400, code="parse_error")


def test_wrong_content_type_is_415(agent):
    response = agent.client.post("/api/v1/memories", "content=x", content_type="text/plain")
    _assert_error(response, 415, code="unsupported_media_type")


def test_json_array_body_is_400(agent):
    response = agent.client.post("/api/v1/memories", "[1,2]", content_type="application/json")
    _assert_error(response, 400)
    assert _nothing_stored()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "query"),
        ({"query": ""}, "query"),
        ({"query": "q" * (LIMITS["max_query_bytes"] + 1)}, "query"),
        ({"query": "x", "k": 0}, "k"),
        ({"query": "x", "k": LIMITS["max_k"] + 1}, "k"),
        ({"query": "x", "k": "ten"}, "k"),
        ({"query": "x", "filters": {"kind": "gossip"}}, "filters.kind"),
        ({"query": "x", "filters": {"created_after": "yesterday"}}, "filters.created_after"),
        ({"query": "x", "filters": {"metadata": {"a": {"nested": 1}}}}, "filters.metadata"),
        ({"query": "x", "filters": {"owner": "me"}}, "filters.owner"),
        ({"query": "x", "filters": "kind=fact"}, "filters"),
    ],
)
def test_invalid_recall_is_rejected(agent, stored, body, field):
    memory = stored("something to find")
    _assert_error(agent.post("/api/v1/recall", body), 400, field)
    assert Memory.objects.get(pk=memory["id"]).access_count == 0  # a refused recall changes nothing


def test_k_at_limit_is_accepted(agent, stored):
    stored("one memory")
    assert agent.post("/api/v1/recall", {"query": "x", "k": LIMITS["max_k"]}).status_code == 200


def test_invalid_update_changes_nothing(team_admin, stored):
    memory = stored("original", tags=["a"])
    response = team_admin.patch(f"/api/v1/memories/{memory['id']}", {"content": "", "tags": ["b"]})
    _assert_error(response, 400, "content")
    row = Memory.objects.get(pk=memory["id"])
    assert (row.content, row.tags, row.version) == ("original", ["a"], 1)
    assert MemoryVersion.objects.count() == 0


def test_update_cannot_change_provenance(team_admin, stored):
    memory = stored("original")
    for field in ("agent_id", "session_id", "namespace"):
        _assert_error(team_admin.patch(f"/api/v1/memories/{memory['id']}", {field: "x"}), 400, field)


@pytest.mark.parametrize(
    ("query", "field"),
    [("created_after=soon", "created_after"), ("kind=gossip", "kind"), ("limit=abc", "limit"),
     ("limit=0", "limit"), ("offset=null", "offset"), ("offset=-1", "offset")],
)
def test_invalid_list_filters(agent, query, field):
    # DRF ignored a malformed limit or offset and listed the first page (issue 16 item 17)
    _assert_error(agent.get(f"/api/v1/memories?{query}"), 400, field)


def test_page_size_is_capped(agent):
    agent.post("/api/v1/memories/batch", {"memories": [{"content": f"m{i}"} for i in range(3)]})
    response = agent.get(f"/api/v1/memories?limit={LIMITS['max_page_size'] + 500}")
    assert response.status_code == 200
    assert response.json()["count"] == 3


@pytest.mark.parametrize("memory_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_unknown_memory_is_404(agent, memory_id):
    _assert_error(agent.get(f"/api/v1/memories/{memory_id}"), 404, code="not_found")


def test_unknown_api_route_is_json_404(agent):
    _assert_error(agent.get("/api/v1/nothing-here"), 404, code="not_found")


def test_method_not_allowed_is_json(agent):
    _assert_error(agent.get("/api/v1/recall"), 405, code="method_not_allowed")


@pytest.mark.parametrize(
    "metadata",
    [{"bad": "\ud800"}, {"\ud800": 1}, {"nested": ["ok", "\udfff"]}, {"nul": "a\x00b"},
     {"big": 2**63}, {"small": -(2**63) - 1}],
)
def test_metadata_that_could_not_be_stored_or_indexed_is_refused(agent, metadata):
    body = json.dumps({"content": "x", "metadata": metadata})  # \ud800 escaped, as a client sends it
    response = agent.client.post("/api/v1/memories", body, content_type="application/json")
    _assert_error(response, 400, "metadata")
    assert _nothing_stored()


def test_metadata_at_int64_edges_is_accepted(agent):
    body = {"content": "x", "metadata": {"max": 2**63 - 1, "min": -(2**63)}}
    assert agent.post("/api/v1/memories", body).status_code == 201


@pytest.mark.parametrize(
    ("filters", "field"),
    [({"metadata": {"n": 2**63}}, "filters.metadata"),
     ({"metadata": {f"k{i}": i for i in range(LIMITS["max_metadata_filters"] + 1)}}, "filters.metadata"),
     ({"created_after": "0001-01-01T00:00:00+05:00"}, "filters.created_after")],
)
def test_recall_filters_out_of_range_are_400(agent, stored, filters, field):
    stored("something")
    _assert_error(agent.post("/api/v1/recall", {"query": "x", "filters": filters}), 400, field)


def test_out_of_range_dates_are_400_not_500(agent):
    response = agent.get("/api/v1/memories?created_after=0001-01-01T00:00:00%2B05:00")
    _assert_error(response, 400, "created_after")
    body = {"content": "x", "expires_at": "0001-01-01T00:00:00+05:00"}
    _assert_error(agent.post("/api/v1/memories", body), 400, "expires_at")
    assert _nothing_stored()


def test_patch_validity_window_is_checked_against_stored_values(team_admin, stored):
    memory = stored("window", valid_from="2026-06-01T00:00:00Z")
    response = team_admin.patch(f"/api/v1/memories/{memory['id']}", {"valid_until": "2026-05-01T00:00:00Z"})
    _assert_error(response, 400, "valid_until")
    assert Memory.objects.get(pk=memory["id"]).valid_until is None


@pytest.mark.parametrize("agent_id", ["a" * (LIMITS["max_id_length"] + 1), "bad%00id"])
def test_delete_by_agent_with_invalid_agent_id_is_400(system_admin, agent_id):
    _assert_error(system_admin.delete(f"/api/v1/agents/{agent_id}/memories"), 400, "agent_id")


@pytest.mark.parametrize("slug", ["al%00pha", "ALPHA", "x" * 65, "../alpha"])
def test_malformed_namespace_parameter_is_404(system_admin, alpha, slug):
    _assert_error(system_admin.get(f"/api/v1/memories?namespace={slug}"), 404, "namespace")
    _assert_error(system_admin.post(f"/api/v1/recall?namespace={slug}", {"query": "x"}), 404)


def test_system_admin_may_name_namespace_in_query_string(system_admin, alpha):
    response = system_admin.post("/api/v1/memories?namespace=alpha", {"content": "via query"})
    assert response.status_code == 201
    assert response.json()["namespace"] == "alpha"
    recall = system_admin.post("/api/v1/recall?namespace=alpha", {"query": "via query"})
    assert recall.json()["results"][0]["content"] == "via query"
    batch = system_admin.post("/api/v1/memories/batch?namespace=alpha", {"memories": [{"content": "b"}]})
    assert batch.status_code == 201
