"""Consolidation's candidate pairs: each memory's nearest stored vectors, events and summaries
left out (apps/memories/vector_neighbours.py).

A Chroma query with a metadata filter costs time in proportion to the collection, so asking
one per memory made a dry run quadratic; rows are asked without the filter, and only a row
crowded by events or summaries is asked again (wider, then filtered)."""

from __future__ import annotations

import numpy as np
import pytest

from apps.memories.vectorstore import get_vector_store

DIM = 32


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _store(namespace, vectors: np.ndarray, kinds: list[str]) -> list[str]:
    ids = [f"{i:032x}" for i in range(len(vectors))]
    get_vector_store().upsert(namespace, ids, vectors,
                              [{"agent_id": "a", "kind": kind} for kind in kinds], fresh=True)
    return ids


@pytest.fixture
def queries(monkeypatch):
    """The ``where`` of every Chroma query made (consolidation's neighbours, here)."""
    from chromadb.api.models.Collection import Collection

    seen: list[object] = []
    original = Collection.query

    def query(self, *args, **options):
        seen.append(options.get("where"))
        return original(self, *args, **options)

    monkeypatch.setattr(Collection, "query", query)
    return seen


def _exact(vectors: np.ndarray, ids: list[str], kinds: list[str], query: np.ndarray,
           n: int) -> list[str]:
    allowed = [i for i, kind in enumerate(kinds) if kind not in ("event", "summary")]
    order = sorted(allowed, key=lambda i: -float(vectors[i] @ query))
    return [ids[i] for i in order[:n]]


def test_facts_alone_are_asked_without_a_filter_and_answered_exactly(alpha, queries):
    rng = np.random.default_rng(5)
    vectors = _unit(rng.normal(size=(60, DIM)))
    kinds = ["fact", "preference", "episode"] * 20
    ids = _store(alpha, vectors, kinds)
    found = get_vector_store().neighbours(alpha, vectors[:10], 5)
    assert [[h.id for h in hits] for hits in found] == [
        _exact(vectors, ids, kinds, vectors[r], 5) for r in range(10)]
    assert all(abs(h.similarity - float(vectors[r] @ vectors[int(h.id, 16)])) < 1e-4
               for r, hits in enumerate(found) for h in hits)
    assert queries == [None]  # one unfiltered query for the batch, no per-row filter


def test_events_and_summaries_crowd_out_nothing(alpha, queries):
    """Rows whose nearest are events: asked again wider, then (still short) with the filter;
    each row still gets its n nearest memories that are neither."""
    rng = np.random.default_rng(8)
    centre = rng.normal(size=DIM)
    near_a = _unit(centre + 0.02 * rng.normal(size=(6, DIM)))  # 6 events next to the query
    facts_a = _unit(centre + 0.3 * rng.normal(size=(4, DIM)))
    other = rng.normal(size=DIM)
    near_b = _unit(other + 0.02 * rng.normal(size=(30, DIM)))  # 30 events and summaries
    facts_b = _unit(other + 0.4 * rng.normal(size=(4, DIM)))
    far = _unit(rng.normal(size=(20, DIM)))
    vectors = np.vstack([near_a, facts_a, near_b, facts_b, far])
    kinds = (["event"] * 6 + ["fact"] * 4 + ["event", "summary"] * 15 + ["fact"] * 4
             + ["fact"] * 20)
    ids = _store(alpha, vectors, kinds)
    rows = _unit(np.vstack([centre, other, far[0]]))
    found = get_vector_store().neighbours(alpha, rows, 3)
    for r, hits in enumerate(found):
        got = [h.id for h in hits]
        assert got == _exact(vectors, ids, kinds, rows[r], 3)
        assert not {kinds[int(i, 16)] for i in got} & {"event", "summary"}
    # unfiltered for all three, unfiltered wider for the two crowded, filtered for the one
    # whose 12 nearest are all events or summaries
    assert queries == [None, None, {"kind": {"$nin": ["event", "summary"]}}]


def test_a_collection_smaller_than_asked_keeps_what_is_allowed(alpha, queries):
    rng = np.random.default_rng(2)
    vectors = _unit(rng.normal(size=(5, DIM)))
    kinds = ["event", "fact", "summary", "fact", "fact"]
    ids = _store(alpha, vectors, kinds)
    found = get_vector_store().neighbours(alpha, vectors[:2], 10)
    assert [[h.id for h in hits] for hits in found] == [
        _exact(vectors, ids, kinds, vectors[r], 10) for r in range(2)]
    assert queries == [None]


def test_an_empty_collection_or_no_rows(alpha):
    store = get_vector_store()
    assert store.neighbours(alpha, np.zeros((2, DIM), dtype=np.float32), 3) == [[], []]
    assert store.neighbours(alpha, np.zeros((0, DIM), dtype=np.float32), 3) == []
