"""What the vector index holds, read the way tests need: a memory's filter fields on
whichever side of the store holds its namespace (Chroma, or the embedded store's small
index), and a vector's bytes in the embedded store's files (erasure tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from django.conf import settings


def held_in(path: Path, vector: np.ndarray, k: int = 8, tol: float = 1e-5) -> bool:
    """Whether ``path`` holds ``vector``'s first ``k`` floats (float32, any alignment;
    HNSW's copy is normalised again, so a few ulps apart: compared with a tolerance)."""
    data = path.read_bytes()
    head = vector[:k].astype(np.float32)
    for shift in range(4):
        count = (len(data) - shift) // 4
        if count < k:
            continue
        floats = np.frombuffer(data, dtype="<f4", count=count, offset=shift)
        with np.errstate(invalid="ignore"):
            starts = np.nonzero(np.abs(floats[: count - k + 1] - head[0]) < tol)[0]
        for start in starts:
            with np.errstate(invalid="ignore"):
                if np.all(np.abs(floats[start:start + k] - head) < tol):
                    return True
    return False


def files_holding(vector: np.ndarray, root: Path | None = None) -> list[str]:
    """The files under ``root`` (the embedded store's directory) holding ``vector``."""
    root = Path(root or settings.CHROMA_PATH)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and held_in(p, vector))


def stored_metadata(namespace, ids) -> dict[str, dict]:
    """The filter fields the vector index holds for each of ``ids`` (ids it lacks left
    out), from the small index or Chroma, wherever the namespace's collection is."""
    from apps.memories.vectorstore import get_vector_store

    store = get_vector_store()
    wanted = [str(i) for i in ids]
    name = store.collection_name(namespace)
    if hasattr(store, "small") and store.small.holds(name):
        return store.small.metadatas(name, wanted)
    found = store.collection(namespace).get(ids=wanted, include=["metadatas"])
    return {i: dict(m or {}) for i, m in zip(found["ids"], found["metadatas"], strict=True)}
