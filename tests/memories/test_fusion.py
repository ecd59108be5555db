"""Fusion of ranked channels."""

from apps.memories import fusion


def test_rrf_top_of_every_channel_scores_one():
    fused = fusion.reciprocal_rank({"a": [("x", 9.0), ("y", 1.0)], "b": [("x", 0.5), ("z", 0.4)]})
    assert fused[0] == ("x", 1.0)
    assert {item for item, _ in fused} == {"x", "y", "z"}


def test_weighted_uses_score_gaps_and_weights():
    channels = {"vector": [("a", 0.9), ("b", 0.8), ("c", 0.1)], "lexical": [("c", 10.0), ("b", 1.0)]}
    equal = dict(fusion.weighted_scores(channels, {"vector": 1, "lexical": 1}))
    assert equal["c"] > equal["b"] > equal["a"] * 0  # c: best keyword hit wins with equal weights
    vector_heavy = fusion.weighted_scores(channels, {"vector": 10, "lexical": 1})
    assert vector_heavy[0][0] == "a"
    assert all(0.0 <= score <= 1.0 for _, score in vector_heavy)


def test_empty_channels_fuse_to_nothing():
    assert fusion.fuse({"vector": [], "lexical": []}, "weighted") == []
    assert fusion.fuse({"vector": [], "lexical": []}, "rrf") == []
