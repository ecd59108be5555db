"""MEMORYWEB_VECTOR_SEARCH_EF: how many candidates Chroma's HNSW explores per query.

HNSW is approximate: two builds of the same vectors (a restored copy, a reindex) may answer
a near-tie differently. Exploring at least as many candidates as the collection holds makes
the search exact, and equal scores come back in id order whatever the index's walk order.
"""

from __future__ import annotations

import numpy as np
import pytest

from apps.memories.recall import channels
from apps.memories.vectorstore import get_vector_store


@pytest.fixture(autouse=True)
def chroma_only(settings):
    """HNSW's ef_search is Chroma's: every namespace goes there from its first memory
    (the small index, where small namespaces live by default, searches exactly)."""
    settings.MEMORYWEB_SMALL_INDEX_LIMIT = 0


def _ef_search(namespace) -> int:
    store = get_vector_store()
    store._collections.pop(store.collection_name(namespace), None)  # opened afresh
    return store._readable(namespace).configuration["hnsw"]["ef_search"]


def test_unset_keeps_chromas_default(agent, alpha, settings):
    settings.MEMORYWEB_VECTOR_SEARCH_EF = 0
    agent.post("/api/v1/memories", {"content": "the collection is created here"})
    assert _ef_search(alpha) == 100


def test_an_existing_collection_takes_a_changed_setting_when_opened(agent, alpha, settings):
    settings.MEMORYWEB_VECTOR_SEARCH_EF = 0
    agent.post("/api/v1/memories", {"content": "created with Chroma's default"})
    assert _ef_search(alpha) == 100
    settings.MEMORYWEB_VECTOR_SEARCH_EF = 777  # the operator changes it; the server restarts
    assert _ef_search(alpha) == 777
    assert agent.post("/api/v1/recall", {"query": "default"}).json()["results"]


def test_with_ef_above_the_collection_size_the_search_is_exact(alpha, settings):
    settings.MEMORYWEB_VECTOR_SEARCH_EF = 5000
    store = get_vector_store()
    rng = np.random.default_rng(3)
    centre = rng.normal(size=64)
    # 1,500 vectors crowded around one point: the case where HNSW's walk misses neighbours.
    vectors = centre + 0.05 * rng.normal(size=(1500, 64))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"{i:032x}" for i in range(len(vectors))]
    for start in range(0, len(ids), 500):
        store.upsert(alpha, ids[start:start + 500], vectors[start:start + 500].astype(np.float32),
                     [{"agent_id": "a"}] * len(ids[start:start + 500]), fresh=True)
    queries = centre + 0.05 * rng.normal(size=(40, 64))
    assert _ef_search(alpha) == 5000  # created with it
    stored = vectors.astype(np.float32)
    missed = 0
    for query in queries:
        query = (query / np.linalg.norm(query)).astype(np.float32)
        similarities = stored @ query
        found = {hit.id for hit in store.query(alpha, query, 50, None)}
        fiftieth = np.sort(similarities)[-50]
        # Every vector clearly above the 50th score is found (a float32 near-tie at the
        # boundary may go either way).
        missed += sum(ids[i] not in found for i in np.nonzero(similarities > fiftieth + 1e-5)[0])
    assert missed == 0


def test_equal_vector_scores_come_back_in_id_order(monkeypatch, alpha):
    from apps.memories import sharing
    from apps.memories.recall.results import RecallResult
    from apps.memories.vectorstore import VectorHit

    ids = ["f" * 32, "0" * 32, "8" * 32, "1" * 32]
    monkeypatch.setattr(type(get_vector_store()), "query", lambda self, *a, **k: [
        VectorHit(ids[0], 0.9), VectorHit(ids[1], 0.5), VectorHit(ids[2], 0.9),
        VectorHit(ids[3], 0.5)])
    result = RecallResult(namespace=alpha, query="q", k=10, hits=[])
    hits = channels._vector_channel(sharing.Source(alpha), "q", {}, 10, set(), result,
                                    {"vector": np.zeros(8, dtype=np.float32)})
    assert [pk.hex for pk, _ in hits] == [ids[2], ids[0], ids[1], ids[3]]
