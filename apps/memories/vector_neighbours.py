"""Consolidation's candidate pairs from Chroma: each row's ``n`` nearest stored vectors that
are not of an excluded kind (events, summaries), without a metadata filter on every query.

Why not Chroma's ``where`` on each query: a filtered query costs time in proportion to the
collection, not to the answer. Measured with chromadb 1.5.9 on the consolidation bench's
20,000 vectors (bench/consolidation.py, hash embedder): 256 queries took 1.46 s with
``{"kind": {"$nin": ["event", "summary"]}}`` and 0.10 s without, about 5.7 ms a query
with the filter (a filter excluding nothing). Asked once per memory of the namespace, that
is quadratic: 153 s of a 172 s dry run over 20,000 memories, and the dry run over 100,000
did not finish in 11 minutes (docs/lifecycle.md, "Time at 100,000 memories").

So rows are asked without a filter, and the hits of an excluded kind are found by id (one
``get`` per batch, bounded by the hits, not by the collection):

1. ``n`` nearest, unfiltered. A row with no excluded hit is answered: the filtered query
   walks the same HNSW graph, and on the bench's 20,000 rows the two answers were
   identical, ids and order.
2. A row crowded by excluded kinds is asked again unfiltered for ``WIDEN * n`` and
   keeps the ``n`` nearest allowed hits, when it found that many.
3. A row still short of ``n`` (a namespace mostly of events near it) is asked with the
   filter, as every row was before: no worse than it was, for those rows only.

A row whose unfiltered answer already holds the whole collection keeps what is allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: How much wider the second, unfiltered ask is for a row crowded by excluded kinds
#: (4 * 11 = 44: within Chroma's default ``ef_search`` of 100, so no wider walk).
WIDEN = 4


def nearest_allowed(collection: Any, embeddings: np.ndarray, n: int,
                    excluded: Sequence[str]) -> list[list[tuple[str, float]]]:
    """Each row's ``n`` nearest stored ids with their cosine similarity, best first, leaving
    out the ids whose ``kind`` is in ``excluded`` (so they crowd out nothing)."""
    size = collection.count() if len(embeddings) else 0
    answers: list[list[tuple[str, float]]] = [[] for _ in range(len(embeddings))]
    if not size or n <= 0:
        return answers
    pending = list(range(len(embeddings)))
    for k in dict.fromkeys((min(n, size), min(WIDEN * n, size))):
        if not pending:
            break
        result = collection.query(query_embeddings=embeddings[pending], n_results=k,
                                  include=["distances"])
        rows = [list(zip(ids, distances, strict=True))
                for ids, distances in zip(result["ids"], result["distances"], strict=True)]
        out = _of_kinds(collection, {i for row in rows for i, _ in row}, excluded)
        still = []
        for index, row in zip(pending, rows, strict=True):
            kept = [(i, 1.0 - float(d)) for i, d in row if i not in out]
            if len(kept) == len(row) or len(kept) >= n or k >= size:
                answers[index] = kept[:n]
            else:
                still.append(index)
        pending = still
    if pending:
        result = collection.query(query_embeddings=embeddings[pending], n_results=min(n, size),
                                  where={"kind": {"$nin": list(excluded)}},
                                  include=["distances"])
        for index, ids, distances in zip(pending, result["ids"], result["distances"],
                                         strict=True):
            answers[index] = [(i, 1.0 - float(d)) for i, d in zip(ids, distances, strict=True)]
    return answers


def _of_kinds(collection: Any, ids: set[str], kinds: Sequence[str]) -> set[str]:
    """Which of ``ids`` are of one of ``kinds``: a lookup by id, as cheap as the hits."""
    if not ids or not kinds:
        return set()
    found = collection.get(ids=sorted(ids), where={"kind": {"$in": list(kinds)}}, include=[])
    return set(found["ids"])
