"""Everything recall does after the channels answer: priors, reranking, minimum score, MMR.

``services.recall`` asks the channels (vector, lexical) for candidates and fuses them
(``fusion``); this module finishes the ranking on the hydrated candidates:

1. **priors** (hybrid mode): recency, importance and the optional reranker join the
   fusion as further inputs scored 0..1, each with its weight. The fused score stays
   the weighted mean of every input, so the explain parts still add up to the score.
2. **evidence**: candidates that nothing which counts found (only a channel weighted 0,
   no session-mate, no reranker score: score 0) are padding, not answers, and are
   dropped unless a request asks for ``pad_to_k`` (``has_evidence``).
3. **minimum score**: results below it are dropped (any mode, on the final score).
4. **MMR** (any mode, when ``mmr_lambda`` is set): the k results are picked greedily,
   trading relevance against similarity to the results already picked.

``options_for`` decides which knobs apply: the request's, else the namespace's
``recall_defaults``, else the server's settings; ``check`` refuses a combination under
which every recall would be empty (all channel weights 0, a minimum score above the
mode's top) or a setting that would be ignored (``rerank`` with no reranker).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings

from apps.memories.models import Memory
from apps.memories.recall.rerank import get_reranker
from apps.tenancy.models import Namespace

RETRIEVAL_CHANNELS = ("vector", "lexical")
PRIORS = ("recency", "importance", "strength")
#: Hybrid's session-context input (``fusion.session_context``), part of the fused score.
SESSION = "session"
#: Inputs whose positive contribution is evidence besides the channels' own: the session
#: context (a session-mate the channels found) and the reranker's opinion. Recency and
#: importance are not: they only reorder what something else found.
EVIDENCE = (SESSION, "rerank")

#: The highest score each mode can give (None: no fixed top), read off the code:
#: hybrid's score is a weighted mean of inputs in 0..1 (``fusion.weighted_scores`` scales
#: each channel to 0..1, ``fusion.reciprocal_rank`` so that rank 1 everywhere is 1.0, the
#: session context and the priors keep the mean), so 1.0 with either fusion; vector's is a
#: cosine similarity, at most 1.0; lexical's is BM25 (SQLite, negated) or ts_rank_cd
#: (PostgreSQL), which grow with the number of matching terms and have no fixed top.
TOP_SCORE = {"hybrid": 1.0, "vector": 1.0, "lexical": None}


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
    #: Fill up to k with candidates no channel found evidence for (score 0); off by default.
    pad_to_k: bool = False
    #: Where each knob came from: "request", "namespace" or "server" (for error messages).
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

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
                "min_score": self.min_score, "mmr_lambda": self.mmr_lambda, "rerank": self.rerank,
                "pad_to_k": self.pad_to_k}


def options_for(namespace: Namespace, params: Mapping[str, Any]) -> RecallOptions:
    """Request over namespace over server settings, key by key."""
    ns = namespace.recall_defaults or {}
    origins: dict[str, str] = {}

    def pick(name: str, default: Any) -> Any:
        if name in params:
            origins[name] = "request"
            return params[name]
        origins[name] = "namespace" if name in ns else "server"
        return ns.get(name, default)

    weights = {**settings.MEMORYWEB_FUSION_WEIGHTS, **(ns.get("weights") or {})}
    origins.update({f"weights.{name}": "namespace" for name in ns.get("weights") or {}})
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
        pad_to_k=bool(pick("pad_to_k", False)),
        origins=origins,
    )


def _field(options: RecallOptions, name: str) -> str | None:
    """The input field that set ``name``: the request's, the namespace's recall_defaults
    (None when it is the server's setting, which no client can change)."""
    origin = options.origins.get(name, "server")
    if origin == "request":
        return name
    return f"recall_defaults.{name}" if origin == "namespace" else None


def _where(options: RecallOptions, name: str) -> str:
    origin = options.origins.get(name, "server")
    if origin == "namespace":
        return " (the namespace's recall_defaults)"
    return "" if origin == "request" else " (the server's setting)"


def check(options: RecallOptions, asked: Mapping[str, Any], *, any_mode: bool = False) -> None:
    """Refuse settings under which every recall comes back empty, or that would be
    ignored without a word (``InvalidInput`` naming the setting).

    ``asked``: the settings given explicitly (the namespace's recall_defaults under the
    request's parameters), to tell ``rerank: true`` from the default. ``any_mode``:
    checking a namespace's defaults, which requests of any mode inherit, so the channel
    weights are checked even if the namespace's own mode does not fuse.
    """
    from apps.core.errors import InvalidInput  # core builds on nothing; keep it a leaf

    if any_mode or options.mode == "hybrid":
        if sum(options.weights.get(name, 1.0) for name in RETRIEVAL_CHANNELS) <= 0:
            field = "recall_defaults.weights" if any(
                options.origins.get(f"weights.{n}") for n in RETRIEVAL_CHANNELS) else None
            raise InvalidInput(
                "weights.vector and weights.lexical are both 0: hybrid recall has no channel "
                "to rank by and would always be empty; give one of them a weight above 0 (or "
                "pick mode vector or lexical).", field=field)
    top = TOP_SCORE.get(options.mode)
    if options.min_score is not None and top is not None and options.min_score > top:
        hint = ("; give a min_score in the request or ask a team admin to change it"
                if options.origins.get("min_score") == "namespace" and not any_mode else "")
        raise InvalidInput(
            f"min_score {options.min_score:g}{_where(options, 'min_score')} is above the "
            f"highest score {options.mode} recall can give ({top:.1f}): every recall would "
            f"be empty{hint}.", field=_field(options, "min_score"))
    if asked.get("rerank") is True:
        where, field = _where(options, "rerank"), _field(options, "rerank")
        if not settings.MEMORYWEB_RERANKER:
            raise InvalidInput(f"rerank is true{where} but no reranker is configured on this "
                               "server (MEMORYWEB_RERANKER); leave rerank out or set it false.",
                               field=field)
        if options.weights.get("rerank", 0) <= 0:
            raise InvalidInput(f"rerank is true{where} but weights.rerank is 0, so the "
                               "reranker's scores would count for nothing; give weights.rerank "
                               "a weight above 0.", field=field)
        if options.origins.get("rerank") == "request" and options.mode != "hybrid":
            raise InvalidInput(f"rerank applies to hybrid recall only, not {options.mode}.",
                               field=field)


def has_evidence(candidate: Candidate, options: RecallOptions) -> bool:
    """Something that counts found it: a channel with a weight above 0 (in hybrid mode)
    gave it a raw score above 0 (a keyword match; a cosine similarity above 0), or the
    session context or the reranker scored it. Otherwise it is padding (score 0).

    The raw score, not the contribution: weighted fusion scales each channel min-max, so
    the weakest keyword match contributes 0 and is still a match.
    """
    for name in RETRIEVAL_CHANNELS:
        part = candidate.parts.get(name)
        weight = options.weights.get(name, 1.0) if options.mode == "hybrid" else 1.0
        if part is not None and weight > 0 and part.get("raw", 0.0) > 0:
            return True
    return any(candidate.parts.get(name, {}).get("contribution", 0.0) > 0 for name in EVIDENCE)


@dataclass
class Candidate:
    memory: Memory
    score: float
    #: input -> {"raw", "rank", "contribution"}; contributions add up to ``score``.
    parts: dict[str, dict[str, float]] = field(default_factory=dict)


def finish(query: str, candidates: list[Candidate], options: RecallOptions, k: int,
           embeddings_for: Callable[[Sequence[str]], Mapping[str, np.ndarray]], *,
           explain_for: int | None = None) -> list[Candidate]:
    """Priors, minimum score and MMR over fused candidates (best first); the top k.

    ``explain_for``: with explain, the caller's namespace id; in hybrid mode its own
    results then show their strength even when the strength prior's weight is 0
    (``_explain_strength``), which costs nothing when not explaining."""
    priors = options.active_priors()
    if priors and candidates:
        _add_priors(query, candidates, priors, options)
        candidates.sort(key=lambda c: c.score, reverse=True)
    if not options.pad_to_k:  # nothing that counts found it: padding, not an answer
        candidates = [c for c in candidates if has_evidence(c, options)]
    if options.min_score is not None:
        candidates = [c for c in candidates if c.score >= options.min_score]
    if options.mmr_lambda is not None and len(candidates) > 1:
        vectors = embeddings_for([str(c.memory.pk) for c in candidates])
        finished = mmr(candidates, vectors, options.mmr_lambda, k)
    else:
        finished = candidates[:k]
    if explain_for is not None and options.mode == "hybrid" and "strength" not in priors:
        _explain_strength([c for c in finished if c.memory.namespace_id == explain_for])
    return finished


def _explain_strength(results: Sequence[Candidate]) -> None:
    """The strength prior at weight 0 (its default): each result's strength and its parts,
    contributing 0, so explain shows it without changing a score or the order. The rank
    is among these results (at a positive weight it is among all candidates). Own results
    only: a shared memory's strength describes the grantor and, at weight 0, plays no
    part in the caller's ranking."""
    if not results:
        return
    strengths = _strengths(results)
    values = [strengths[str(c.memory.pk)].value for c in results]
    order = sorted(range(len(results)), key=lambda i: values[i], reverse=True)
    for rank, index in enumerate(order, start=1):
        shown = strengths[str(results[index].memory.pk)].as_dict()
        results[index].parts["strength"] = {"raw": values[index], "rank": rank,
                                            "contribution": 0.0,
                                            **{key: value for key, value in shown.items()
                                               if key != "value"}}


def _add_priors(query: str, candidates: list[Candidate], priors: Sequence[str],
                options: RecallOptions) -> None:
    """Scale the retrieval parts and add each prior's, so the score is the weighted mean.

    The fused retrieval score is already 0..1 with total weight ``retrieval`` (the
    channels' weights, plus the session input's when it took part); each prior adds
    ``weight * value`` and its weight to the total.
    """
    strengths = _strengths(candidates) if "strength" in priors else {}
    values = {name: _prior_values(name, query, candidates, options, strengths)
              for name in priors}
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
            if name == "strength":  # explain shows what the strength is made of
                candidate.parts[name].update(
                    {key: value for key, value in strengths[str(candidate.memory.pk)].as_dict(
                    ).items() if key != "value"})
    for candidate in candidates:
        for name in (*RETRIEVAL_CHANNELS, SESSION):
            if name in candidate.parts:
                candidate.parts[name]["contribution"] *= scale
        candidate.score = sum(part["contribution"] for part in candidate.parts.values())


def _prior_values(name: str, query: str, candidates: Sequence[Candidate],
                  options: RecallOptions, strengths: Mapping[str, Any]) -> list[float | None]:
    """One 0..1 value per candidate (None: no value)."""
    if name == "importance":
        return [min(max(c.memory.importance, 0.0), 1.0) for c in candidates]
    if name == "recency":
        # Relative to the newest candidate, so an archive (all old) is ranked by how
        # recent each memory is among the others, not flattened to zero.
        times = [c.memory.event_time.timestamp() for c in candidates]
        newest, half_life = max(times), options.recency_half_life_days * 86400
        return [0.5 ** ((newest - t) / half_life) for t in times]
    if name == "strength":
        return [strengths[str(c.memory.pk)].value for c in candidates]
    if name == "rerank":
        return _rerank_values(query, candidates)
    raise ValueError(f"unknown prior {name!r}")


def _strengths(candidates: Sequence[Candidate]) -> dict[str, Any]:
    """Each candidate's strength (apps/memories/strength.py) by id, read per namespace (a
    recall with ``include_shared`` spans several): two queries per namespace."""
    from apps.memories import strength

    by_namespace: dict[int, list[Memory]] = {}
    for candidate in candidates:
        by_namespace.setdefault(candidate.memory.namespace_id, []).append(candidate.memory)
    namespaces = Namespace.objects.in_bulk(list(by_namespace))
    found: dict[str, Any] = {}
    for namespace_id, memories in by_namespace.items():
        found.update(strength.for_memories(namespaces[namespace_id], memories))
    return found


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
