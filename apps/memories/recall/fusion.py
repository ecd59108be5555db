"""Fusing ranked lists from several recall channels into one ranking.

Every fused score is the sum of per-channel contributions, and those contributions are
kept, so ``explain`` can show how each result got its score and the parts add up.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

#: The usual RRF constant (Cormack et al. 2009): dampens the weight of top ranks.
RRF_K = 60

Channels = Mapping[str, Sequence[tuple[Hashable, float]]]


@dataclass
class Fused:
    item: Hashable
    score: float = 0.0
    #: channel -> {"raw": engine score, "rank": 1-based, "contribution": share of score}
    parts: dict[str, dict[str, float]] = field(default_factory=dict)


def _collect(channels: Channels, contribution) -> list[Fused]:
    fused: dict[Hashable, Fused] = {}
    for name, ranked in channels.items():
        for rank, (item, raw) in enumerate(ranked, start=1):
            entry = fused.get(item)
            if entry is None:  # not setdefault: it would build a Fused per hit
                entry = fused[item] = Fused(item)
            share = contribution(name, rank, raw)
            entry.parts[name] = {"raw": raw, "rank": rank, "contribution": share}
            entry.score += share
    return sorted(fused.values(), key=lambda entry: entry.score, reverse=True)


def reciprocal_rank(channels: Channels, weights: Mapping[str, float] | None = None,
                    k: int = RRF_K) -> list[Fused]:
    """Reciprocal-rank fusion, scaled so that rank 1 in every channel scores 1.0.

    Raw scores are ignored, only ranks count, which makes channels with incomparable
    scales (cosine, BM25) fusable.
    """
    weights = weights or {}
    best = sum(weights.get(name, 1.0) / (k + 1) for name in channels)
    if not best:
        return []
    return _collect(channels, lambda name, rank, raw: weights.get(name, 1.0) / (k + rank) / best)


def weighted_scores(channels: Channels, weights: Mapping[str, float] | None = None) -> list[Fused]:
    """Weighted sum of per-channel scores, each scaled to 0..1 over the channel's candidates.

    Unlike RRF this keeps how much better one candidate is than the next: a keyword hit
    with twice the BM25 of the runner-up counts for more than one that barely leads. A
    candidate missing from a channel gets nothing from it; a channel's only candidate (or
    candidates that all score alike) gets the channel's full weight.
    """
    weights = weights or {}
    norm = sum(weights.get(name, 1.0) for name in channels)
    if not norm:
        return []
    bounds: dict[str, tuple[float, float]] = {}
    for name, ranked in channels.items():
        scores = [score for _, score in ranked] or [0.0]
        low, top = min(scores), max(scores)
        bounds[name] = (low, top - low)

    def contribution(name: str, rank: int, raw: float) -> float:
        low, span = bounds[name]
        # One candidate (or all scoring alike): each is the channel's best, not its worst.
        scaled = (raw - low) / span if span else 1.0
        return weights.get(name, 1.0) * scaled / norm

    return _collect(channels, contribution)


def single(channel: str, ranked: Sequence[tuple[Hashable, float]]) -> list[Fused]:
    """One channel: its own score, its own rank (for a uniform explain output)."""
    return [Fused(item, raw, {channel: {"raw": raw, "rank": rank, "contribution": raw}})
            for rank, (item, raw) in enumerate(ranked, start=1)]


def session_context(fused: Sequence[Fused], sessions: Mapping[Hashable, str],
                    weight: float) -> list[Fused]:
    """Add a ``session`` part: ``weight`` x the fused score of the best *other* candidate
    from the same session, then rescale so scores stay in 0..1.

    Memories are written in conversations: when a session-mate of a candidate is itself
    a strong hit, the candidate is more likely on topic too (the answer often sits a turn
    away from the words the query shares with it). The best *other* member is used, not
    the session's best, so a lone strong hit is not boosted by its own score.
    Candidates without a session get no part; when no two candidates share a session,
    nothing changes. ``weight`` is relative to the channels' total weight, so the score
    is the weighted mean of the channels and the session-mate's score. The part's
    ``raw`` is that session-mate's fused score and ``rank`` its fused rank; every
    contribution is divided by ``1 + weight``, so the parts still add up.
    """
    if weight <= 0:
        return list(fused)
    base = [(entry, entry.score) for entry in fused]
    leaders: dict[str, list[tuple[int, Fused, float]]] = {}  # session -> its best two
    for rank, (entry, score) in enumerate(sorted(base, key=lambda pair: pair[1], reverse=True), 1):
        session = sessions.get(entry.item)
        if session and len(leaders.setdefault(session, [])) < 2:
            leaders[session].append((rank, entry, score))
    if not any(len(top) > 1 for top in leaders.values()):  # no session-mates: no input
        return list(fused)
    scale = 1.0 / (1.0 + weight)
    for entry, _ in base:
        for part in entry.parts.values():
            part["contribution"] *= scale
        entry.score *= scale
        mate = next((m for m in leaders.get(sessions.get(entry.item), ()) if m[1] is not entry), None)
        if mate is not None:
            rank, _, score = mate
            share = weight * score * scale
            entry.parts["session"] = {"raw": score, "rank": rank, "contribution": share}
            entry.score += share
    return sorted((entry for entry, _ in base), key=lambda entry: entry.score, reverse=True)


def fuse(channels: Channels, method: str, weights: Mapping[str, float] | None = None) -> list[Fused]:
    if method == "rrf":
        return reciprocal_rank(channels, weights)
    if method == "weighted":
        return weighted_scores(channels, weights)
    raise ValueError(f"unknown fusion method {method!r}")
