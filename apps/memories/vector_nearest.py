"""The nearest stored vector a new memory may duplicate (``VectorStore.nearest``), found
without a metadata filter where it can be.

Chroma applies a ``where`` filter by reading the metadata of every vector that passes it
before the HNSW search (a brute-force pre-filter), so a filtered query costs time in
proportion to the collection: bare Chroma, 384 dimensions, a third of the vectors
excluded, 2.8 ms a query at 10,000 vectors and 9.1 ms at 50,000, against 0.7 and 1.0 ms
for an unfiltered query of the 8 nearest. Ingest asks this for every new memory, so it
slowed as a namespace grew. The unfiltered probe answers exactly whenever one of its hits
is of a kind that may be duplicated (any closer such vector would be among them); only
rows whose hits are all excluded kinds (events, summaries) are asked again with the
filter.

The probe asks Chroma for distances only and reads kinds (``get``, by id) for the hits
within ``within`` (the least similarity the caller acts on: the near-duplicate
threshold), so the usual row, nothing that near, costs one HNSW search. Reading the
metadata of all 8 hits was a third of the probe (bare Chroma, 20,000 vectors: 0.65 vs
0.44 ms a query) and the probe 6% of batch ingest at 70,000 memories.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Hits asked for without the filter before falling back to it.
PROBE = 8


def nearest_allowed(collection: Any, embeddings: np.ndarray, excluded: Sequence[str],
                    size: int, within: float | None = None) -> list[tuple[str, float] | None]:
    """For each row of ``embeddings``: the closest vector of ``collection`` (holding
    ``size`` vectors) whose metadata ``kind`` is not ``excluded``, as ``(id, distance)``,
    or None when there is none — or, with ``within``, none at least that similar.

    Distances first; kinds are read by id for the hits within the bound only."""
    probe = min(PROBE, size)
    bound = float("inf") if within is None else 1.0 - within + _SLACK
    found = collection.query(query_embeddings=embeddings, n_results=probe, include=["distances"])
    close = [[(i, float(d)) for i, d in zip(ids, distances, strict=True) if d <= bound]
             for ids, distances in zip(found["ids"], found["distances"], strict=True)]
    wanted = sorted({i for row in close for i, _ in row})
    kinds: dict[str, Any] = {}
    if wanted:
        got = collection.get(ids=wanted, include=["metadatas"])
        kinds = {i: (m or {}).get("kind") for i, m in zip(got["ids"], got["metadatas"], strict=True)}
    hits: list[tuple[str, float] | None] = []
    again: list[int] = []
    for row, (near, ids) in enumerate(zip(close, found["ids"], strict=True)):
        # A hit gone between the query and the get (a summary a rebuild deleted) counts
        # as excluded: it must not hide a real duplicate behind it.
        hit = next(((i, d) for i, d in near if i in kinds and kinds[i] not in excluded), None)
        if hit is None and len(near) == len(ids) and probe < size:
            again.append(row)  # every probed hit close but excluded (or none came): ask again
        hits.append(hit)
    _ask_again(collection, embeddings, excluded, again, hits, bound)
    return hits


#: Distances a hair beyond the bound still come back: the caller compares similarities
#: (1 - distance) with the bound itself, and float rounding must not drop an equal one.
_SLACK = 1e-6


def _ask_again(collection: Any, embeddings: np.ndarray, excluded: Sequence[str],
               again: list[int], hits: list[tuple[str, float] | None], bound: float) -> None:
    """Fill ``hits[row]`` for the rows whose probe found only excluded kinds, with
    Chroma's filter (the nearest allowed one; None beyond ``bound``)."""
    if not again:
        return
    filtered = collection.query(query_embeddings=embeddings[again], n_results=1,
                                where={"kind": {"$nin": list(excluded)}}, include=["distances"])
    for row, ids, distances in zip(again, filtered["ids"], filtered["distances"], strict=True):
        near = ids and distances[0] <= bound
        hits[row] = (ids[0], float(distances[0])) if near else None

