"""Fusion of ranked channels: order, scale, and contributions that add up."""

import pytest

from apps.memories.recall import fusion


def _scores(fused):
    return {f.item: f.score for f in fused}


def test_rrf_top_of_every_channel_scores_one():
    fused = fusion.reciprocal_rank({"a": [("x", 9.0), ("y", 1.0)], "b": [("x", 0.5), ("z", 0.4)]})
    assert (fused[0].item, fused[0].score) == ("x", pytest.approx(1.0))
    assert set(_scores(fused)) == {"x", "y", "z"}


def test_weighted_uses_score_gaps_and_weights():
    channels = {"vector": [("a", 0.9), ("b", 0.8), ("c", 0.5), ("d", 0.1)],
                "lexical": [("c", 10.0), ("b", 1.0)]}
    equal = _scores(fusion.weighted_scores(channels, {"vector": 1, "lexical": 1}))
    # c: middling by meaning, far ahead by keywords; b barely leads c by meaning
    assert equal["c"] == pytest.approx(0.75) and equal["c"] > equal["a"] > equal["b"]
    vector_heavy = fusion.weighted_scores(channels, {"vector": 10, "lexical": 1})
    assert vector_heavy[0].item == "a"
    assert all(0.0 <= f.score <= 1.0 for f in vector_heavy)


@pytest.mark.parametrize("method", ["rrf", "weighted"])
def test_contributions_add_up_to_the_score(method):
    channels = {"vector": [("a", 0.9), ("b", 0.7), ("c", 0.2)], "lexical": [("b", 7.0), ("d", 3.0)]}
    for entry in fusion.fuse(channels, method, {"vector": 1.0, "lexical": 2.0}):
        assert sum(p["contribution"] for p in entry.parts.values()) == pytest.approx(entry.score)
        for name, part in entry.parts.items():
            ranked = [item for item, _ in channels[name]]
            assert ranked.index(entry.item) + 1 == part["rank"]


def test_empty_channels_fuse_to_nothing():
    assert fusion.fuse({"vector": [], "lexical": []}, "weighted") == []
    assert fusion.fuse({"vector": [], "lexical": []}, "rrf") == []
    with pytest.raises(ValueError):
        fusion.fuse({}, "magic")


def test_session_context_boosts_session_mates_and_keeps_parts_adding_up():
    channels = {"lexical": [("a", 9.0), ("b", 5.0), ("c", 4.9), ("d", 1.0)]}
    ranked = fusion.session_context(fusion.weighted_scores(channels),
                                    {"a": "s1", "c": "s1", "b": "s2"}, 0.3)
    assert [e.item for e in ranked] == ["a", "c", "b", "d"]  # c rides on a; b is alone
    for entry in ranked:
        assert sum(p["contribution"] for p in entry.parts.values()) == pytest.approx(entry.score)
    parts = {e.item: e.parts for e in ranked}
    assert parts["c"]["session"]["rank"] == 1 and parts["a"]["session"]["rank"] == 3
    assert "session" not in parts["b"] and "session" not in parts["d"]
    assert max(e.score for e in ranked) <= 1.0


def test_session_context_without_session_mates_changes_nothing():
    fused = fusion.weighted_scores({"lexical": [("a", 9.0), ("b", 5.0)]})
    before = [(e.item, e.score) for e in fused]
    after = fusion.session_context(fused, {"a": "s1", "b": "s2"}, 0.3)
    assert [(e.item, e.score) for e in after] == before


def test_a_channels_only_candidate_gets_its_full_weight():
    """Min-max scaling would give a lone keyword hit 0 (it is both the best and the worst)."""
    fused = {f.item: f for f in fusion.weighted_scores(
        {"lexical": [("a", 2.6)], "vector": [("a", 0.5), ("b", 0.4)]}, {"lexical": 3, "vector": 1})}
    assert fused["a"].parts["lexical"]["contribution"] == 0.75
    assert fused["a"].score == 1.0 and fused["b"].score == 0.0
    alike = fusion.weighted_scores({"lexical": [("a", 1.0), ("b", 1.0)]})
    assert [f.score for f in alike] == [1.0, 1.0]
