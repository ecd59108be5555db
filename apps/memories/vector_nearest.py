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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Hits asked for without the filter before falling back to it.
PROBE = 8


def nearest_allowed(collection: Any, embeddings: np.ndarray, excluded: Sequence[str],
                    size: int) -> list[tuple[str, float] | None]:
    """For each row of ``embeddings``: the closest vector of ``collection`` (holding
    ``size`` vectors) whose metadata ``kind`` is not ``excluded``, as ``(id, distance)``,
    or None when there is none."""
    probe = min(PROBE, size)
    found = collection.query(query_embeddings=embeddings, n_results=probe,
                             include=["distances", "metadatas"])
    hits: list[tuple[str, float] | None] = []
    again: list[int] = []
    for row, (ids, distances, metadatas) in enumerate(zip(
            found["ids"], found["distances"], found["metadatas"], strict=True)):
        hit = next(((i, float(d)) for i, d, m in zip(ids, distances, metadatas, strict=True)
                    if (m or {}).get("kind") not in excluded), None)
        if hit is None and probe < size:
            again.append(row)  # every probed hit excluded (or fewer came): more may lie beyond
        hits.append(hit)
    if again:
        filtered = collection.query(query_embeddings=embeddings[again], n_results=1,
                                    where={"kind": {"$nin": list(excluded)}},
                                    include=["distances"])
        for row, ids, distances in zip(again, filtered["ids"], filtered["distances"],
                                       strict=True):
            hits[row] = (ids[0], float(distances[0])) if ids else None
    return hits
