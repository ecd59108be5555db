"""Recall by meaning over a real Chroma: read-your-writes, filters, edits, deletes, reindex."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.memories.models import Memory
from apps.memories.vectorstore import get_vector_store

FACTS = [
    "The production API rate limit is 480 requests per minute",
    "Alice prefers dark mode in her editor",
    "Deployments to production happen every Tuesday afternoon",
    "The staging database runs PostgreSQL 15 on host db-3",
    "Bob is allergic to peanuts, avoid them when ordering lunch",
    "The quarterly planning meeting moved to the big conference room",
    "Use ruff for linting Python code in this repository",
    "Customer Acme renewed their contract for three more years",
]


def _recall(caller, query, k=5, mode=None, **filters):
    body = {"query": query, "k": k}
    if mode:
        body["mode"] = mode
    if filters:
        body["filters"] = filters
    response = caller.post("/api/v1/recall", body)
    assert response.status_code == 200, response.content
    return response.json()["results"]


@pytest.fixture
def facts(agent):
    response = agent.post("/api/v1/memories/batch", {"memories": [{"content": f} for f in FACTS]})
    assert response.status_code == 201
    return response.json()["results"]


@pytest.mark.parametrize("fact", FACTS)
def test_store_then_recall_own_text_is_rank_one(agent, facts, fact):
    assert _recall(agent, fact)[0]["content"] == fact  # the default mode (hybrid)
    results = _recall(agent, fact, mode="vector")
    assert results[0]["content"] == fact
    assert results[0]["score"] > 0.99  # cosine similarity with itself


def test_recall_by_paraphrase(agent, facts):
    assert _recall(agent, "how many requests per minute may I send?")[0]["content"] == FACTS[0]
    assert _recall(agent, "which food allergies does Bob have")[0]["content"] == FACTS[4]


def test_scores_are_descending_and_k_is_respected(agent, facts):
    results = _recall(agent, "production", k=3)
    assert len(results) == 3
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)


def test_recall_updates_access_stats(agent, facts):
    top = _recall(agent, FACTS[1], k=1)[0]
    row = Memory.objects.get(pk=top["id"])
    assert row.access_count == 1
    assert row.last_recalled_at is not None


def test_filter_by_kind_tags_session_and_metadata(agent):
    agent.post("/api/v1/memories", {"content": "Release notes are written in Markdown", "kind": "procedure",
                                    "tags": ["docs", "release"], "session_id": "s1",
                                    "metadata": {"project": "apollo", "priority": 2}})
    agent.post("/api/v1/memories", {"content": "Release notes go out on Fridays", "kind": "fact",
                                    "tags": ["release"], "session_id": "s2",
                                    "metadata": {"project": "zeus", "priority": 2}})
    query = "release notes"
    assert {r["kind"] for r in _recall(agent, query, kind="procedure")} == {"procedure"}
    assert [r["session_id"] for r in _recall(agent, query, session_id="s2")] == ["s2"]
    assert len(_recall(agent, query, tags=["release"])) == 2
    assert [r["tags"] for r in _recall(agent, query, tags=["release", "docs"])] == [["docs", "release"]]
    assert [r["metadata"]["project"] for r in _recall(agent, query, metadata={"project": "zeus"})] == ["zeus"]
    assert len(_recall(agent, query, metadata={"priority": 2})) == 2
    assert _recall(agent, query, metadata={"project": "hera"}) == []


def test_filter_by_agent_id(agent, team_admin):
    agent.post("/api/v1/memories", {"content": "written by the agent"})
    team_admin.post("/api/v1/memories", {"content": "written by the admin"})
    results = _recall(agent, "written by", agent_id="admin-1")
    assert [r["agent_id"] for r in results] == ["admin-1"]


def test_filter_by_created_range(agent, facts):
    Memory.objects.filter(content=FACTS[0]).update(created_at=timezone.now() - timedelta(days=10))
    # Chroma holds the creation time given at ingest; re-index so the moved row is seen.
    call_command("reindex", "--namespace", "alpha")
    cutoff = (timezone.now() - timedelta(days=1)).isoformat()
    # pad_to_k: every memory the filter lets through, also those pointing away from the query.
    after = agent.post("/api/v1/recall", {"query": FACTS[0], "k": 20, "pad_to_k": True,
                                          "filters": {"created_after": cutoff}}).json()["results"]
    assert FACTS[0] not in [r["content"] for r in after]
    assert len(after) == len(FACTS) - 1
    before = _recall(agent, FACTS[0], k=20, created_before=cutoff)
    assert [r["content"] for r in before] == [FACTS[0]]


def test_expired_memories_are_not_recalled_or_listed(agent):
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    gone = agent.post("/api/v1/memories", {"content": "an expired secret"}).json()
    Memory.objects.filter(pk=gone["id"]).update(expires_at=past)  # expired since (ingest refuses a past one)
    agent.post("/api/v1/memories", {"content": "a lasting secret"})
    assert [r["content"] for r in _recall(agent, "secret")] == ["a lasting secret"]
    assert agent.get(f"/api/v1/memories/{gone['id']}").status_code == 404
    assert agent.get("/api/v1/memories").json()["count"] == 1


def test_update_reembeds_and_records_version(agent, team_admin, facts):
    target = facts[0]
    response = team_admin.patch(f"/api/v1/memories/{target['id']}",
                                {"content": "Penguins live in Antarctica", "tags": ["birds"]})
    assert response.status_code == 200
    assert response.json()["version"] == 2
    top = _recall(agent, "Where do penguins live?", k=1)[0]
    assert top["id"] == target["id"]
    assert all(r["id"] != target["id"] for r in _recall(agent, "API rate limit requests per minute", k=3))
    versions = team_admin.get(f"/api/v1/memories/{target['id']}/versions").json()
    assert versions[0]["version"] == 2
    assert versions[0]["changed_by"].startswith("key:mw_live_")
    assert versions[0]["changes"]["content"] == {"before": FACTS[0], "after": "Penguins live in Antarctica"}
    assert versions[0]["changes"]["tags"] == {"before": [], "after": ["birds"]}
    assert _recall(agent, "birds", tags=["birds"])[0]["id"] == target["id"]


def test_update_with_same_values_writes_no_version(team_admin, facts):
    target = facts[1]
    response = team_admin.patch(f"/api/v1/memories/{target['id']}", {"content": target["content"]})
    assert response.json()["version"] == 1
    assert team_admin.get(f"/api/v1/memories/{target['id']}/versions").json() == []


def test_delete_removes_from_vector_index(agent, team_admin, facts, alpha):
    target = facts[2]
    assert team_admin.delete(f"/api/v1/memories/{target['id']}").status_code == 204
    assert target["id"] not in get_vector_store().all_ids(alpha)
    assert all(r["id"] != target["id"] for r in _recall(agent, FACTS[2], k=10))


def test_reindex_gives_same_results(agent, facts, alpha):
    queries = ["rate limit", "editor theme", "lunch allergies", "database host", "contract renewal"]
    before = [[(r["id"], round(r["score"], 4)) for r in _recall(agent, q)] for q in queries]
    old_collection = alpha.collection
    call_command("reindex")
    alpha.refresh_from_db()
    assert alpha.collection != old_collection  # rebuilt into a fresh collection, then swapped
    after = [[(r["id"], round(r["score"], 4)) for r in _recall(agent, q)] for q in queries]
    assert after == before
    assert get_vector_store().count(alpha) == len(FACTS)


def test_reindex_removes_vectors_of_rows_gone_from_sql(agent, facts, alpha):
    Memory.objects.filter(pk=facts[0]["id"]).delete()  # behind the service's back
    call_command("reindex", "--namespace", "alpha")
    assert facts[0]["id"] not in get_vector_store().all_ids(alpha)


def test_list_filters(agent):
    agent.post("/api/v1/memories", {"content": "a", "kind": "episode", "tags": ["x"], "session_id": "s1"})
    agent.post("/api/v1/memories", {"content": "b", "kind": "fact", "tags": ["y"], "session_id": "s2"})

    def contents(query):
        return sorted(m["content"] for m in agent.get(f"/api/v1/memories?{query}").json()["results"])

    assert contents("kind=episode") == ["a"]
    assert contents("tag=y") == ["b"]
    assert contents("session_id=s1") == ["a"]
    assert contents("agent_id=agent-1") == ["a", "b"]
    assert contents("agent_id=someone-else") == []
    future = (timezone.now() + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert contents(f"created_before={future}") == ["a", "b"]
    assert contents(f"created_after={future}") == []


def test_list_is_paginated(agent):
    agent.post("/api/v1/memories/batch", {"memories": [{"content": f"m{i}"} for i in range(5)]})
    page = agent.get("/api/v1/memories?limit=2&offset=0").json()
    assert page["count"] == 5
    assert len(page["results"]) == 2
    assert "offset=2" in page["next"]


def test_expired_memory_can_still_be_deleted_and_edited(team_admin):
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    expired = team_admin.post("/api/v1/memories", {"content": "stale"}).json()
    Memory.objects.filter(pk=expired["id"]).update(expires_at=past)  # ingest refuses a past one
    patched = team_admin.patch(f"/api/v1/memories/{expired['id']}", {"expires_at": None})
    assert patched.status_code == 200  # un-expired by an edit
    assert team_admin.get(f"/api/v1/memories/{expired['id']}").status_code == 200
    assert team_admin.patch(f"/api/v1/memories/{expired['id']}",  # an edit may not expire it
                            {"expires_at": past}).status_code == 400
    Memory.objects.filter(pk=expired["id"]).update(expires_at=past)
    assert team_admin.delete(f"/api/v1/memories/{expired['id']}").status_code == 204
    assert not Memory.objects.filter(pk=expired["id"]).exists()


def test_recall_echoes_validated_parameters(agent, facts):
    body = agent.post("/api/v1/recall", {"query": "rate limit"}).json()
    assert (body["namespace"], body["query"], body["k"]) == ("alpha", "rate limit", 10)


def test_recall_reports_server_timing(agent, facts):
    response = agent.post("/api/v1/recall", {"query": "rate limit"})
    stages = {part.split(";")[0].strip() for part in response["Server-Timing"].split(",")}
    assert {"embed", "vector", "sql", "service", "app"} <= stages
