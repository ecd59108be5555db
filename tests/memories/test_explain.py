"""``explain``: every channel's raw score, rank and contribution; the parts add up."""

from __future__ import annotations

import pytest
from django.db import connection

FACTS = ["The staging database runs on host db-3", "Alice prefers dark mode in her editor",
         "Deployments to production happen every Tuesday", "The db-3 host has 64 GB of memory"]


@pytest.fixture
def facts(agent):
    agent.post("/api/v1/memories/batch", {"memories": [{"content": f} for f in FACTS]})


@pytest.mark.parametrize("mode", ["vector", "lexical", "hybrid"])
def test_contributions_add_up_to_the_score(agent, facts, mode):
    body = agent.post("/api/v1/recall", {"query": "Which host runs staging database?", "mode": mode,
                                         "explain": True}).json()
    assert body["explain"]["mode"] == mode
    assert body["results"]
    for rank, result in enumerate(body["results"], start=1):
        parts = result["explain"]
        assert sum(p["contribution"] for p in parts.values()) == pytest.approx(result["score"], abs=1e-5)
        expected = {"vector": ["vector"], "lexical": ["lexical"], "hybrid": None}[mode]
        if expected:
            assert list(parts) == expected and parts[mode]["rank"] == rank


def test_hybrid_explain_shows_both_channels_and_the_engine_query(agent, facts):
    body = agent.post("/api/v1/recall", {"query": 'db-3 "host" NEAR', "mode": "hybrid",
                                         "explain": True}).json()
    explain = body["explain"]
    assert explain["fusion"] in ("weighted", "rrf") and {"vector", "lexical"} <= set(explain["weights"])
    if connection.vendor == "postgresql":
        assert explain["lexical_query"] == "db | 3 | host | near"
    else:
        assert explain["lexical_query"] == '"db" OR "3" OR "host" OR "near"'
    top = body["results"][0]
    # plus the strength, shown at its default weight 0 with no contribution
    assert set(top["explain"]) == {"vector", "lexical", "strength"}
    assert top["explain"]["strength"]["contribution"] == 0
    assert top["explain"]["lexical"]["raw"] > 0


def test_without_explain_there_is_no_breakdown(agent, facts):
    body = agent.post("/api/v1/recall", {"query": "editor theme"}).json()
    assert "explain" not in body and all("explain" not in r for r in body["results"])


def test_hybrid_session_context_part(agent):
    """A session-mate of a strong hit gets a ``session`` part; a memory alone does not."""
    agent.post("/api/v1/memories/batch", {"memories": [
        {"content": "The staging database runs on host db-3", "session_id": "ops-1"},
        {"content": "It was moved there last spring", "session_id": "ops-1"},
        {"content": "The db-3 host has 64 GB of memory"},
    ]})
    body = agent.post("/api/v1/recall", {"query": "staging database host", "mode": "hybrid",
                                         "k": 3, "explain": True}).json()
    parts = {r["content"]: r["explain"] for r in body["results"]}
    assert "session" in parts["It was moved there last spring"]
    assert "session" in parts["The staging database runs on host db-3"]
    assert "session" not in parts["The db-3 host has 64 GB of memory"]
    for result in body["results"]:
        total = sum(p["contribution"] for p in result["explain"].values())
        assert total == pytest.approx(result["score"], abs=1e-5)
    filtered = agent.post("/api/v1/recall", {"query": "staging database host", "mode": "hybrid",
                                             "explain": True, "filters": {"session_id": "ops-1"}})
    assert all("session" not in r["explain"] for r in filtered.json()["results"])
