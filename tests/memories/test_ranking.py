"""Ranking after fusion: recency and importance priors, reranker, minimum score, MMR,
and where each setting comes from (request over namespace over server)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from django.core.exceptions import ValidationError

from apps.memories.recall import ranking
from apps.tenancy.models import NearDuplicatePolicy

EARLY = "The backup job runs at 2am on Sundays"
LATE = "The backup job runs at 3am on Sundays"
QUERY = "When does the backup job run?"


def _defaults(namespace, **values):
    namespace.recall_defaults = values
    namespace.full_clean()
    namespace.save()


def _recall(caller, **body):
    response = caller.post("/api/v1/recall", {"query": QUERY, "mode": "hybrid", **body})
    assert response.status_code == 200, response.content
    return response.json()


def _assert_parts_add_up(results):
    for result in results:
        total = sum(part["contribution"] for part in result["explain"].values())
        assert total == pytest.approx(result["score"], abs=1e-5)


@pytest.mark.parametrize("important", [EARLY, LATE])
def test_importance_lifts_the_important_of_two_equal_matches(agent, alpha, stored, important):
    _defaults(alpha, weights={"importance": 5.0})
    for content in (EARLY, LATE):
        stored(content, importance=1.0 if content == important else 0.0)
    body = _recall(agent, explain=True)
    assert body["results"][0]["content"] == important
    assert body["results"][0]["explain"]["importance"]["raw"] == 1.0
    _assert_parts_add_up(body["results"])


@pytest.mark.parametrize("newer", [EARLY, LATE])
def test_recency_lifts_what_happened_last(agent, alpha, stored, newer):
    _defaults(alpha, weights={"recency": 5.0}, recency_half_life_days=7)
    for content in (EARLY, LATE):
        stored(content, occurred_at="2024-03-01T00:00:00Z" if content == newer else "2024-01-01T00:00:00Z")
    body = _recall(agent, explain=True)
    top = body["results"][0]
    assert top["content"] == newer
    assert top["explain"]["recency"]["raw"] == 1.0  # the newest candidate
    older = next(r for r in body["results"] if r["content"] != newer)
    assert older["explain"]["recency"]["raw"] == pytest.approx(0.5 ** (60 / 7), rel=1e-3)
    _assert_parts_add_up(body["results"])


def test_zero_weight_priors_do_not_appear(agent, stored):
    stored(EARLY)
    parts = _recall(agent, explain=True)["results"][0]["explain"]
    # the strength is shown even at weight 0 (its default), contributing nothing
    assert set(parts) <= {"vector", "lexical", "strength"}
    assert parts["strength"]["contribution"] == 0


def test_min_score_drops_weak_results(agent, stored):
    stored(EARLY)
    stored("Alice prefers green tea in the afternoon")
    everything = _recall(agent, k=10)["results"]
    cut = (everything[0]["score"] + everything[-1]["score"]) / 2
    kept = _recall(agent, k=10, min_score=cut)["results"]
    assert kept and len(kept) < len(everything) and all(r["score"] >= cut for r in kept)
    # Above what hybrid can score: refused, not an empty answer (test_recall_settings.py).
    assert agent.post("/api/v1/recall", {"query": QUERY, "min_score": 1.01}).status_code == 400


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_mmr_trades_relevance_for_variety(agent, alpha, stored, mode):
    _defaults(alpha)
    alpha.near_duplicate_policy = NearDuplicatePolicy.KEEP
    alpha.save()
    for content in (EARLY, "The backup job runs at 2am every Sunday",
                    "Backups of the database are kept for 30 days"):
        stored(content)
    plain = [r["content"] for r in _recall(agent, k=2, mode=mode)["results"]]
    assert "Backups of the database are kept for 30 days" not in plain
    diverse = _recall(agent, k=2, mode=mode, mmr_lambda=0.3, explain=True)["results"]
    assert diverse[1]["content"] == "Backups of the database are kept for 30 days"
    assert [r["explain"]["mmr"]["rank"] for r in diverse] == [1, 2]
    assert diverse[1]["explain"]["mmr"]["raw"] < 0.9  # little overlap with the first pick
    same = [r["content"] for r in _recall(agent, k=2, mode=mode, mmr_lambda=1.0)["results"]]
    assert same == plain


class KeywordReranker:
    """A test reranker (a real implementation of the interface): favours 'Sundays'."""

    calls: list[int] = []

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        KeywordReranker.calls.append(len(texts))
        return [10.0 if "Sundays" in text else -3.0 for text in texts]


@pytest.fixture
def keyword_reranker(settings):
    settings.MEMORYWEB_RERANKER = "tests.memories.test_ranking.KeywordReranker"
    settings.MEMORYWEB_FUSION_WEIGHTS = {**settings.MEMORYWEB_FUSION_WEIGHTS, "rerank": 100.0}
    KeywordReranker.calls.clear()
    return KeywordReranker


def test_reranker_reorders_and_is_explained(agent, stored, keyword_reranker):
    stored("The backup job schedule: nightly at 2am")
    stored("Cleanup happens on Sundays")
    body = _recall(agent, explain=True)
    assert body["results"][0]["content"] == "Cleanup happens on Sundays"
    assert body["explain"]["rerank"] is True and keyword_reranker.calls
    assert body["results"][0]["explain"]["rerank"]["raw"] == 1.0
    _assert_parts_add_up(body["results"])
    calls = len(keyword_reranker.calls)
    off = _recall(agent, rerank=False, explain=True)
    assert len(keyword_reranker.calls) == calls and off["explain"]["rerank"] is False
    assert all("rerank" not in r["explain"] for r in off["results"])


def test_rerank_is_off_without_a_configured_reranker(agent, stored):
    stored(EARLY)
    assert _recall(agent, explain=True)["explain"]["rerank"] is False
    # Asking for it anyway is a 400 naming the setting, not silently ignored.
    refused = agent.post("/api/v1/recall", {"query": QUERY, "rerank": True})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "rerank"


def test_namespace_defaults_apply_and_requests_override_them(agent, alpha, stored):
    stored(EARLY)
    _defaults(alpha, mode="lexical", fusion="rrf", min_score=0.0)
    body = agent.post("/api/v1/recall", {"query": QUERY, "explain": True}).json()
    assert body["mode"] == "lexical"
    body = agent.post("/api/v1/recall", {"query": QUERY, "mode": "hybrid", "explain": True}).json()
    assert body["mode"] == "hybrid" and body["explain"]["fusion"] == "rrf"


def test_options_precedence(alpha, settings):
    settings.MEMORYWEB_MIN_SCORE = 0.1
    settings.MEMORYWEB_MMR_LAMBDA = None
    alpha.recall_defaults = {"min_score": 0.2, "weights": {"lexical": 3.0}, "mmr_lambda": 0.5}
    options = ranking.options_for(alpha, {"min_score": 0.3})
    assert options.min_score == 0.3 and options.mmr_lambda == 0.5
    assert options.weights["lexical"] == 3.0 and options.weights["vector"] == 1.0
    assert ranking.options_for(alpha, {"mmr_lambda": None}).mmr_lambda is None


@pytest.mark.parametrize("defaults, message", [
    ({"fusion": "magic"}, "fusion"),
    ({"weights": {"vector": -1}}, "weights.vector"),
    ({"weights": {"popularity": 1}}, "popularity"),
    ({"mmr_lambda": 2}, "mmr_lambda"),
    ({"colour": "blue"}, "colour"),
    (["not", "an", "object"], "JSON object"),
])
def test_bad_namespace_defaults_are_refused(alpha, defaults, message):
    alpha.recall_defaults = defaults
    with pytest.raises(ValidationError, match=message):
        alpha.full_clean()


@pytest.mark.parametrize("body, field", [
    ({"mmr_lambda": 1.5}, "mmr_lambda"), ({"mmr_lambda": "high"}, "mmr_lambda"),
    ({"min_score": "x"}, "min_score"), ({"rerank": "maybe"}, "rerank"),
])
def test_bad_ranking_parameters_are_400(agent, body, field):
    response = agent.post("/api/v1/recall", {"query": QUERY, **body})
    assert response.status_code == 400 and response.json()["error"]["field"] == field
