"""Fusing ranked lists from several recall channels into one ranking."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

#: The usual RRF constant (Cormack et al. 2009): dampens the weight of top ranks.
RRF_K = 60


def reciprocal_rank(channels: Mapping[str, Sequence[tuple[Hashable, float]]],
                    weights: Mapping[str, float] | None = None,
                    k: int = RRF_K) -> list[tuple[Hashable, float]]:
    """Reciprocal-rank fusion, scaled so that rank 1 in every channel scores 1.0.

    Each channel is a best-first list of (id, raw score); raw scores are ignored, only
    ranks count, which makes channels with incomparable scales (cosine, BM25) fusable.
    """
    weights = weights or {}
    total: dict[Hashable, float] = {}
    best = 0.0
    for name, ranked in channels.items():
        weight = weights.get(name, 1.0)
        best += weight / (k + 1)
        for rank, (item, _) in enumerate(ranked, start=1):
            total[item] = total.get(item, 0.0) + weight / (k + rank)
    if not best:
        return []
    fused = sorted(total.items(), key=lambda pair: pair[1], reverse=True)
    return [(item, score / best) for item, score in fused]


def weighted_scores(channels: Mapping[str, Sequence[tuple[Hashable, float]]],
                    weights: Mapping[str, float] | None = None) -> list[tuple[Hashable, float]]:
    """Weighted sum of per-channel scores, each scaled to 0..1 by the channel's best.

    Unlike RRF this keeps how much better one candidate is than the next: a keyword hit
    with twice the BM25 of the runner-up counts for more than one that barely leads. A
    candidate missing from a channel scores 0 there.
    """
    weights = weights or {}
    total: dict[Hashable, float] = {}
    norm = 0.0
    for name, ranked in channels.items():
        weight = weights.get(name, 1.0)
        norm += weight
        if not ranked:
            continue
        top = max(score for _, score in ranked)
        low = min(score for _, score in ranked)
        span = (top - low) or 1.0
        for item, score in ranked:
            total[item] = total.get(item, 0.0) + weight * (score - low) / span
    if not norm:
        return []
    fused = sorted(total.items(), key=lambda pair: pair[1], reverse=True)
    return [(item, score / norm) for item, score in fused]


def fuse(channels: Mapping[str, Sequence[tuple[Hashable, float]]], method: str,
         weights: Mapping[str, float] | None = None) -> list[tuple[Hashable, float]]:
    if method == "rrf":
        return reciprocal_rank(channels, weights)
    if method == "weighted":
        return weighted_scores(channels, weights)
    raise ValueError(f"unknown fusion method {method!r}")
