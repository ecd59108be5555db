"""No side channel through keyword statistics: a tenant's scores depend on its memories only.

BM25 weighs a term by how many documents hold it and normalises by the number and
length of documents. If those counts spanned every tenant, a tenant could store a
memory with a word and one with a fresh nonce, query both, and read from the order
or the raw scores (``explain``) whether any other tenant had stored that word; the
common-term pruning (``lexical_dropped``) would tell the same. Here beta probes, alpha
writes in between, and nothing beta can see may change.
"""

from __future__ import annotations

import pytest

from apps.memories import lexical

PROBE = "zephyrine quokkalite"
BETA_MEMORIES = ["the zephyrine report is filed", "the quokkalite report is filed",
                 "an unrelated note about lunch"]


def _probe(outsider, beta) -> dict:
    """Everything beta can learn from a keyword query: order, raw scores, dropped terms."""
    direct = lexical.search(beta.pk, lexical.build_query(PROBE), 10)
    body = outsider.post("/api/v1/recall", {"query": PROBE, "mode": "lexical",
                                            "explain": True}).json()
    return {
        "direct": direct,
        "results": [(r["id"], r["explain"]["lexical"]["raw"]) for r in body["results"]],
        "dropped": body["explain"]["lexical_dropped"],
    }


@pytest.fixture
def probing(outsider, beta, monkeypatch):
    """Beta's memories stored, pruning active at any size, and beta's view before alpha writes."""
    monkeypatch.setattr(lexical, "PRUNE_FROM_ROWS", 0)
    monkeypatch.setattr(lexical, "_totals", {})
    response = outsider.post("/api/v1/memories/batch", {"memories": [{"content": c} for c in BETA_MEMORIES]})
    assert response.status_code == 201, response.content
    before = _probe(outsider, beta)
    assert len(before["results"]) == 2 and before["dropped"] == []
    return before


def _recount(monkeypatch) -> None:
    monkeypatch.setattr(lexical, "_totals", {})  # no cached count may hide a change


def test_other_tenants_words_do_not_move_scores_or_order(agent, outsider, beta, probing, monkeypatch):
    # alpha stores the probed word many times (and much else, changing every total)
    response = agent.post("/api/v1/memories/batch", {"memories": [
        {"content": f"zephyrine memo {i} about the zephyrine budget"} for i in range(12)]})
    assert response.status_code == 201, response.content
    _recount(monkeypatch)
    assert _probe(outsider, beta) == probing


def test_other_tenants_words_do_not_change_what_is_pruned(agent, outsider, beta, probing, monkeypatch):
    # the second probed word becomes common server-wide, but not in beta
    response = agent.post("/api/v1/memories/batch", {"memories": [
        {"content": f"quokkalite sighting number {i}"} for i in range(30)]})
    assert response.status_code == 201, response.content
    _recount(monkeypatch)
    assert _probe(outsider, beta) == probing


def test_other_tenants_deletes_do_not_move_scores(agent, team_admin, outsider, beta, probing,
                                                   monkeypatch):
    stored = agent.post("/api/v1/memories/batch", {"memories": [
        {"content": f"zephyrine quokkalite entry {i}"} for i in range(6)]}).json()["results"]
    for memory_id in [m["id"] for m in stored[:3]]:
        assert team_admin.delete(f"/api/v1/memories/{memory_id}").status_code == 204
    _recount(monkeypatch)
    assert _probe(outsider, beta) == probing
