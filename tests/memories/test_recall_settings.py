"""Recall settings that could only ever give nothing are refused (issue 16, item 10).

All channel weights 0, a ``min_score`` above the highest score the mode can give, or
``rerank: true`` with no reranker (or with its weight 0) used to be accepted, and every
recall then answered ``[]`` or ignored the setting without a word. They are 400s naming
the setting, on the namespace's ``recall_defaults`` and on a request. Results that no
channel found evidence for (score 0, padding up to k) are left out unless a request asks
for them with ``pad_to_k``.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from apps.tenancy.models import Namespace

FRUIT = ["Apples grow on trees in the orchard", "Bananas ripen in the warm sun",
         "Cherries are small and dark red"]


@pytest.fixture
def fruit(stored):
    return [stored(text)["id"] for text in FRUIT]


def _patch(caller, defaults):
    return caller.patch("/api/v1/namespaces/alpha", {"recall_defaults": defaults})


def _refused(response, field: str, *words: str):
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["field"] == field, error
    for word in words:
        assert word in error["message"], error
    return error


# --- namespace defaults ------------------------------------------------------------------

@pytest.mark.parametrize("defaults", [
    {"fusion": "rrf", "weights": {"vector": 0, "lexical": 0, "session": 0}},
    {"fusion": "weighted", "weights": {"vector": 0, "lexical": 0}},
    {"mode": "vector", "weights": {"vector": 0, "lexical": 0}},  # a request may ask hybrid
])
def test_all_channel_weights_zero_is_refused(team_admin, alpha, defaults):
    _refused(_patch(team_admin, defaults), "recall_defaults.weights", "vector", "lexical")
    assert Namespace.objects.get(pk=alpha.pk).recall_defaults == {}


@pytest.mark.parametrize(("defaults", "mode"), [
    ({"min_score": 5}, "hybrid"), ({"min_score": 1.0001, "fusion": "rrf"}, "hybrid"),
    ({"mode": "vector", "min_score": 1.5}, "vector"),
])
def test_a_min_score_above_the_modes_top_is_refused(team_admin, alpha, defaults, mode):
    _refused(_patch(team_admin, defaults), "recall_defaults.min_score", mode, "1.0")
    assert Namespace.objects.get(pk=alpha.pk).recall_defaults == {}


def test_reachable_settings_are_kept(team_admin):
    for defaults in ({"min_score": 1.0}, {"weights": {"vector": 0}},
                     {"mode": "lexical", "min_score": 25}):
        response = _patch(team_admin, defaults)
        assert response.status_code == 200, response.content


def test_rerank_without_a_reranker_is_refused(team_admin):
    _refused(_patch(team_admin, {"rerank": True}), "recall_defaults.rerank", "MEMORYWEB_RERANKER")


def test_rerank_with_weight_zero_is_refused(team_admin, settings):
    settings.MEMORYWEB_RERANKER = "tests.memories.test_ranking.KeywordReranker"
    _refused(_patch(team_admin, {"rerank": True, "weights": {"rerank": 0}}),
             "recall_defaults.rerank", "weights.rerank")
    assert _patch(team_admin, {"rerank": True}).status_code == 200


def test_the_dashboard_form_refuses_them_too(alpha):
    alpha.recall_defaults = {"weights": {"vector": 0, "lexical": 0}}
    with pytest.raises(ValidationError, match="vector"):
        alpha.full_clean()


# --- per request --------------------------------------------------------------------------

@pytest.mark.parametrize("min_score", [5, 1e308, 1.01])
def test_a_request_min_score_above_the_top_is_400(agent, fruit, min_score):
    _refused(agent.post("/api/v1/recall", {"query": "apples", "min_score": min_score}),
             "min_score", "hybrid", "1.0")


def test_lexical_scores_have_no_fixed_top(agent, fruit):
    response = agent.post("/api/v1/recall", {"query": "apples", "mode": "lexical",
                                             "min_score": 5})
    assert response.status_code == 200, response.content


def test_a_namespace_min_score_that_only_fits_another_mode_is_named(agent, team_admin, fruit):
    assert _patch(team_admin, {"mode": "lexical", "min_score": 5}).status_code == 200
    error = _refused(agent.post("/api/v1/recall", {"query": "apples", "mode": "hybrid"}),
                     "recall_defaults.min_score", "hybrid")
    assert "namespace" in error["message"]
    # The request's own min_score replaces the namespace's.
    assert agent.post("/api/v1/recall", {"query": "apples", "mode": "hybrid",
                                         "min_score": 0.1}).status_code == 200


def test_a_request_rerank_without_a_reranker_is_400(agent, fruit):
    _refused(agent.post("/api/v1/recall", {"query": "apples", "rerank": True}), "rerank",
             "MEMORYWEB_RERANKER")
    assert agent.post("/api/v1/recall", {"query": "apples", "rerank": False}).status_code == 200


def test_every_door_refuses_them(agent, fruit):
    cmm = agent.post("/cmm/ingest_and_recall", {"gist": "Dates are sweet", "min_score": 3})
    assert cmm.status_code == 400  # seed 000 has no min_score: unknown there
    both = agent.post("/api/v1/ingest_and_recall", {"content": "Dates are sweet",
                                                    "min_score": 3})
    _refused(both, "min_score")


# --- no evidence, no result ---------------------------------------------------------------

def test_results_no_channel_found_evidence_for_are_left_out(agent, team_admin, fruit):
    assert _patch(team_admin, {"weights": {"vector": 0}}).status_code == 200  # keywords only
    body = agent.post("/api/v1/recall", {"query": "apples orchard", "k": 10,
                                         "explain": True}).json()
    assert [r["content"] for r in body["results"]] == [FRUIT[0]]
    assert all(r["score"] > 0 for r in body["results"])


def test_pad_to_k_brings_the_padding_back(agent, team_admin, fruit):
    assert _patch(team_admin, {"weights": {"vector": 0}}).status_code == 200
    body = agent.post("/api/v1/recall", {"query": "apples orchard", "k": 10,
                                         "pad_to_k": True}).json()
    assert body["results"][0]["content"] == FRUIT[0]
    assert sorted(r["content"] for r in body["results"]) == sorted(FRUIT)
    assert [r["score"] for r in body["results"][1:]] == [0.0, 0.0]


def test_the_weakest_real_match_stays_although_fusion_scores_it_0(agent, fruit):
    """Weighted fusion scales each channel min-max, so the weakest neighbour contributes 0;
    it was still found (cosine similarity above 0), so it is an answer, not padding."""
    rows = agent.post("/api/v1/recall", {"query": "apples orchard", "k": 10,
                                         "explain": True}).json()["results"]
    assert sorted(r["content"] for r in rows) == sorted(FRUIT)
    assert rows[-1]["score"] == 0.0 and rows[-1]["explain"]["vector"]["raw"] > 0


@pytest.mark.parametrize(("mode", "weights", "parts", "evidence"), [
    ("vector", {}, {"vector": {"raw": 0.12, "contribution": 0.12}}, True),
    ("vector", {}, {"vector": {"raw": -0.05, "contribution": -0.05}}, False),  # points away
    ("vector", {}, {"vector": {"raw": 0.0, "contribution": 0.0}}, False),
    ("lexical", {}, {"lexical": {"raw": 3.2, "contribution": 3.2}}, True),
    ("hybrid", {"vector": 0.0}, {"vector": {"raw": 0.9, "contribution": 0.0}}, False),
    ("hybrid", {}, {"vector": {"raw": 0.3, "contribution": 0.0}}, True),  # min-max's 0
    ("hybrid", {"vector": 0.0}, {"vector": {"raw": 0.9, "contribution": 0.0},
                                 "session": {"raw": 0.8, "contribution": 0.2}}, True),
    ("hybrid", {"vector": 0.0}, {"vector": {"raw": 0.9, "contribution": 0.0},
                                 "recency": {"raw": 1.0, "contribution": 0.3}}, False),
    ("hybrid", {"vector": 0.0}, {"vector": {"raw": 0.9, "contribution": 0.0},
                                 "rerank": {"raw": 1.0, "contribution": 0.3}}, True),
])
def test_what_counts_as_evidence(mode, weights, parts, evidence):
    from apps.memories.recall.ranking import Candidate, RecallOptions, has_evidence

    options = RecallOptions(mode=mode, fusion="weighted", weights={"vector": 1.0, "lexical": 3.0,
                                                                   **weights},
                            recency_half_life_days=30, min_score=None, mmr_lambda=None,
                            rerank=False)
    assert has_evidence(Candidate(memory=None, score=0.0, parts=parts), options) is evidence
