"""Everything recall does after the channels answer: priors, reranking, minimum score, MMR.

``services.recall`` asks the channels (vector, lexical) for candidates and fuses them
(``fusion``); this module finishes the ranking on the hydrated candidates:

1. **priors** (hybrid mode): recency, importance and the optional reranker join the
   fusion as further inputs scored 0..1, each with its weight. The fused score stays
   the weighted mean of every input, so the explain parts still add up to the score.
2. **minimum score**: results below it are dropped (any mode, on the final score).
3. **MMR** (any mode, when ``mmr_lambda`` is set): the k results are picked greedily,
   trading relevance against similarity to the results already picked.

``options_for`` decides which knobs apply: the request's, else the namespace's
``recall_defaults``, else the server's settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings

from apps.memories.models import Memory
from apps.memories.rerank import get_reranker
from apps.tenancy.models import Namespace

RETRIEVAL_CHANNELS = ("vector", "lexical")
PRIORS = ("recency", "importance")
#: Hybrid's session-context input (``fusion.session_context``), part of the fused score.
SESSION = "session"


@dataclass(frozen=True)
class RecallOptions:
    """The ranking knobs in force for one recall."""

    mode: str
    fusion: str
    weights: Mapping[str, float]
    recency_half_life_days: float
    min_score: float | None
    mmr_lambda: float | None
    rerank: bool

    def active_priors(self) -> list[str]:
        """Priors that take part: hybrid mode only, and only with a positive weight."""
        if self.mode != "hybrid":
            return []
        names = [name for name in PRIORS if self.weights.get(name, 0) > 0]
        if self.rerank and self.weights.get("rerank", 0) > 0:
            names.append("rerank")
        return names

    def candidate_depth(self, k: int) -> int:
        """How many fused candidates to load before the final cut to k.

        Only k when nothing reorders; more when priors, the reranker or MMR may lift a
        candidate from below the cut.
        """
        if not self.active_priors() and self.mmr_lambda is None:
            return k
        depth = max(2 * k, k + 10)
        if "rerank" in self.active_priors():
            depth = max(depth, settings.MEMORYWEB_RERANK_DEPTH)
        return min(depth, k + settings.MEMORYWEB_HYBRID_POOL)

    def describe(self) -> dict[str, Any]:
        """For explain: the settings the ranking used."""
        return {"fusion": self.fusion, "weights": dict(self.weights),
                "recency_half_life_days": self.recency_half_life_days,
                "min_score": self.min_score, "mmr_lambda": self.mmr_lambda, "rerank": self.rerank}


def options_for(namespace: Namespace, params: Mapping[str, Any]) -> RecallOptions:
    """Request over namespace over server settings, key by key."""
    ns = namespace.recall_defaults or {}

    def pick(name: str, default: Any) -> Any:
        if name in params:
            return params[name]
        return ns.get(name, default)

    weights = {**settings.MEMORYWEB_FUSION_WEIGHTS, **(ns.get("weights") or {})}
    reranker_configured = bool(settings.MEMORYWEB_RERANKER)
    return RecallOptions(
        mode=pick("mode", settings.MEMORYWEB_RECALL_MODE),
        fusion=ns.get("fusion", settings.MEMORYWEB_FUSION),
        weights=weights,
        recency_half_life_days=ns.get("recency_half_life_days",
                                      settings.MEMORYWEB_RECENCY_HALF_LIFE_DAYS),
        min_score=pick("min_score", settings.MEMORYWEB_MIN_SCORE),
        mmr_lambda=pick("mmr_lambda", settings.MEMORYWEB_MMR_LAMBDA),
        rerank=bool(pick("rerank", reranker_configured)) and reranker_configured,
    )


@dataclass
class Candidate:
    memory: Memory
    score: float
    #: input -> {"raw", "rank", "contribution"}; contributions add up to ``score``.
    parts: dict[str, dict[str, float]] = field(default_factory=dict)


def finish(query: str, candidates: list[Candidate], options: RecallOptions, k: int,
           embeddings_for: Callable[[Sequence[str]], Mapping[str, np.ndarray]]) -> list[Candidate]:
    """Priors, minimum score and MMR over fused candidates (best first); the top k."""
    priors = options.active_priors()
    if priors and candidates:
        _add_priors(query, candidates, priors, options)
        candidates.sort(key=lambda c: c.score, reverse=True)
    if options.min_score is not None:
        candidates = [c for c in candidates if c.score >= options.min_score]
    if options.mmr_lambda is not None and len(candidates) > 1:
        vectors = embeddings_for([str(c.memory.pk) for c in candidates])
        return mmr(candidates, vectors, options.mmr_lambda, k)
    return candidates[:k]


def _add_priors(query: str, candidates: list[Candidate], priors: Sequence[str],
                options: RecallOptions) -> None:
    """Scale the retrieval parts and add each prior's, so the score is the weighted mean.

    The fused retrieval score is already 0..1 with total weight ``retrieval`` (the
    channels' weights, plus the session input's when it took part); each prior adds
    ``weight * value`` and its weight to the total.
    """
    values = {name: _prior_values(name, query, candidates, options) for name in priors}
    retrieval = sum(options.weights.get(name, 1.0) for name in RETRIEVAL_CHANNELS)
    if any(SESSION in c.parts for c in candidates):
        retrieval += options.weights.get(SESSION, 0.0)
    total = retrieval + sum(options.weights[name] for name in priors)
    scale = retrieval / total
    for name, column in values.items():
        order = sorted(range(len(candidates)), key=lambda i: column[i] or 0.0, reverse=True)
        ranks = {index: rank for rank, index in enumerate(order, start=1)}
        for index, candidate in enumerate(candidates):
            if column[index] is None:  # below the reranker's depth: no opinion
                continue
            candidate.parts[name] = {"raw": column[index], "rank": ranks[index],
                                     "contribution": options.weights[name] * column[index] / total}
    for candidate in candidates:
        for name in (*RETRIEVAL_CHANNELS, SESSION):
            if name in candidate.parts:
                candidate.parts[name]["contribution"] *= scale
        candidate.score = sum(part["contribution"] for part in candidate.parts.values())


def _prior_values(name: str, query: str, candidates: Sequence[Candidate],
                  options: RecallOptions) -> list[float | None]:
    """One 0..1 value per candidate (None: no value)."""
    if name == "importance":
        return [min(max(c.memory.importance, 0.0), 1.0) for c in candidates]
    if name == "recency":
        # Relative to the newest candidate, so an archive (all old) is ranked by how
        # recent each memory is among the others, not flattened to zero.
        times = [c.memory.event_time.timestamp() for c in candidates]
        newest, half_life = max(times), options.recency_half_life_days * 86400
        return [0.5 ** ((newest - t) / half_life) for t in times]
    if name == "rerank":
        return _rerank_values(query, candidates)
    raise ValueError(f"unknown prior {name!r}")


def _rerank_values(query: str, candidates: Sequence[Candidate]) -> list[float | None]:
    """The reranker's scores for the top candidates, scaled to 0..1 (min-max)."""
    reranker = get_reranker()
    depth = min(len(candidates), settings.MEMORYWEB_RERANK_DEPTH)
    raw = [float(s) for s in reranker.score(query, [c.memory.content for c in candidates[:depth]])]
    if len(raw) != depth:
        raise ValueError(f"the reranker returned {len(raw)} scores for {depth} texts.")
    low, span = min(raw), (max(raw) - min(raw)) or 1.0
    return [(s - low) / span for s in raw] + [None] * (len(candidates) - depth)


def mmr(candidates: Sequence[Candidate], vectors: Mapping[str, np.ndarray], lam: float,
        k: int) -> list[Candidate]:
    """Maximal marginal relevance (Carbonell & Goldstein 1998), greedy, best first.

    Each step picks the candidate maximising ``lam * relevance - (1 - lam) * redundancy``
    where relevance is the score scaled to 0..1 over the candidates and redundancy the
    highest cosine similarity to a result already picked. Scores are left as they were
    (explain gets an ``mmr`` part with the redundancy and a zero contribution).
    """
    scores = np.array([c.score for c in candidates], dtype=float)
    span = (scores.max() - scores.min()) or 1.0
    relevance = (scores - scores.min()) / span
    dim = next((len(v) for v in vectors.values()), 1)
    matrix = np.stack([vectors.get(str(c.memory.pk), np.zeros(dim)) for c in candidates])
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = matrix / np.where(norms == 0, 1.0, norms)
    similarity = matrix @ matrix.T
    picked: list[int] = []
    redundancy = np.zeros(len(candidates))
    remaining = list(range(len(candidates)))
    while remaining and len(picked) < k:
        gains = [lam * relevance[i] - (1 - lam) * redundancy[i] for i in remaining]
        best = remaining.pop(int(np.argmax(gains)))
        candidates[best].parts["mmr"] = {"raw": float(redundancy[best]), "rank": len(picked) + 1,
                                         "contribution": 0.0}
        picked.append(best)
        redundancy = np.maximum(redundancy, similarity[best])
    return [candidates[i] for i in picked]
