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
