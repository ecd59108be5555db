"""``nearest_allowed`` (apps/memories/vector_nearest.py): the nearest vector of a kind a new
memory may duplicate, found by an unfiltered probe and asked again with Chroma's filter only
when every probed hit is an excluded kind. Against a real Chroma collection in a temp dir,
it must answer what the filtered query answers."""

from __future__ import annotations

import chromadb
import numpy as np
import pytest

from apps.memories.vector_nearest import PROBE, nearest_allowed
from apps.memories.vectorstore import NOT_DUPLICATED


class Counting:
    """The collection, counting the queries asked with a ``where`` filter."""

    def __init__(self, collection):
        self.collection, self.filtered, self.with_metadata = collection, 0, 0
        self.read: list[str] = []  # ids whose metadata was read by id

    def query(self, **kwargs):
        self.filtered += "where" in kwargs
        self.with_metadata += "metadatas" in kwargs.get("include", ())
        return self.collection.query(**kwargs)

    def get(self, **kwargs):
        self.read.extend(kwargs["ids"])
        return self.collection.get(**kwargs)


@pytest.fixture
def collection(tmp_path):
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    return client.create_collection("nearest-test", metadata={"hnsw:space": "cosine"})


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _filtered(collection, queries: np.ndarray) -> list[str | None]:
    found = collection.query(query_embeddings=queries, n_results=1, include=["distances"],
                             where={"kind": {"$nin": list(NOT_DUPLICATED)}})
    return [ids[0] if ids else None for ids in found["ids"]]


def test_the_nearest_allowed_hit_behind_more_excluded_ones_than_the_probe(collection):
    """The query's PROBE + 3 nearest vectors are events; a fact lies just beyond them."""
    base = np.zeros(16, dtype=np.float32)
    base[0] = 1.0
    rows, kinds = [], []
    for n in range(PROBE + 3):  # events ever closer to the query
        row = base.copy()
        row[1] = 0.01 * (n + 1)
        rows.append(row)
        kinds.append("event")
    fact = base.copy()
    fact[1] = 0.5
    rows.append(fact)
    kinds.append("fact")
    far = np.zeros(16, dtype=np.float32)
    far[2] = 1.0
    rows.append(far)
    kinds.append("summary")
    collection.add(ids=[f"m{i}" for i in range(len(rows))], embeddings=_unit(np.array(rows)),
                   metadatas=[{"kind": k} for k in kinds])
    counting = Counting(collection)
    (hit,) = nearest_allowed(counting, _unit(base[None, :]), NOT_DUPLICATED, len(rows))
    assert hit is not None and hit[0] == f"m{PROBE + 3}" and 0 < hit[1] < 0.2
    assert counting.filtered == 1  # asked again, with the filter


def test_only_excluded_kinds_is_none_and_a_close_fact_needs_no_filter(collection):
    rows = _unit(np.random.default_rng(3).standard_normal((5, 16)))
    collection.add(ids=[f"e{i}" for i in range(5)], embeddings=rows,
                   metadatas=[{"kind": "event"}] * 5)
    counting = Counting(collection)
    assert nearest_allowed(counting, rows[:2], NOT_DUPLICATED, 5) == [None, None]
    assert counting.filtered == 0  # every vector was probed: nothing lies beyond
    collection.add(ids=["f0"], embeddings=rows[:1] * 0.99 + rows[1:2] * 0.01,
                   metadatas=[{"kind": "fact"}])
    counting = Counting(collection)
    (hit,) = nearest_allowed(counting, rows[:1], NOT_DUPLICATED, 6)
    assert hit is not None and hit[0] == "f0" and counting.filtered == 0


def test_it_answers_what_the_filtered_query_answers(collection):
    """600 vectors, two thirds events or summaries, 200 queries: the same nearest hit as
    Chroma's filtered query, and far fewer filtered queries than rows."""
    rng = np.random.default_rng(7)
    rows = _unit(rng.standard_normal((600, 24)))
    kinds = rng.choice(["event", "summary", "fact", "note", "event", "event"], size=600)
    collection.add(ids=[f"m{i}" for i in range(600)], embeddings=rows,
                   metadatas=[{"kind": str(k)} for k in kinds])
    queries = _unit(rng.standard_normal((200, 24)))
    counting = Counting(collection)
    found = nearest_allowed(counting, queries, NOT_DUPLICATED, 600)
    assert [hit[0] if hit else None for hit in found] == _filtered(collection, queries)
    assert counting.filtered <= 1


def _around(rng, rows: np.ndarray, noise: float) -> np.ndarray:
    return _unit(rows + noise * rng.standard_normal(rows.shape))


def test_within_a_similarity_it_answers_what_the_filtered_query_answers(collection):
    """With ``within`` (the near-duplicate threshold) the probe reads distances only and
    the kinds of close hits only: the answer is the filtered query's nearest hit when it
    is that similar, else None."""
    rng = np.random.default_rng(11)
    rows = _unit(rng.standard_normal((600, 24)))
    kinds = rng.choice(["event", "summary", "fact", "note", "event", "event"], size=600)
    collection.add(ids=[f"m{i}" for i in range(600)], embeddings=rows,
                   metadatas=[{"kind": str(k)} for k in kinds])
    # Half the queries are near a stored vector (some of them events), half are not.
    queries = np.concatenate([_around(rng, rows[:100], 0.05), _unit(rng.standard_normal((100, 24)))])
    expected = collection.query(query_embeddings=queries, n_results=1, include=["distances"],
                                where={"kind": {"$nin": list(NOT_DUPLICATED)}})
    wanted = [ids[0] if ids and 1 - d[0] >= 0.95 else None
              for ids, d in zip(expected["ids"], expected["distances"], strict=True)]
    counting = Counting(collection)
    found = nearest_allowed(counting, queries, NOT_DUPLICATED, 600, within=0.95)
    assert [hit[0] if hit else None for hit in found] == wanted
    assert sum(hit is not None for hit in found) >= 20  # the case is exercised
    assert counting.with_metadata == 0
    close = {hit[0] for hit in found if hit}
    assert close <= set(counting.read) and len(counting.read) < 200  # kinds of close hits only


def test_within_finds_an_allowed_hit_behind_close_excluded_ones(collection):
    """More close events than the probe holds, a close fact beyond them: asked again with
    the filter; a fact beyond the bound is None."""
    base = np.zeros(16, dtype=np.float32)
    base[0] = 1.0
    rows = []
    for n in range(PROBE + 3):
        row = base.copy()
        row[1] = 0.01 * (n + 1)
        rows.append(row)
    fact = base.copy()
    fact[1] = 0.2  # cosine ~0.98
    collection.add(ids=[f"e{i}" for i in range(len(rows))] + ["fact"],
                   embeddings=_unit(np.array([*rows, fact])),
                   metadatas=[{"kind": "event"}] * len(rows) + [{"kind": "fact"}])
    counting = Counting(collection)
    (hit,) = nearest_allowed(counting, _unit(base[None, :]), NOT_DUPLICATED, len(rows) + 1,
                             within=0.95)
    assert hit is not None and hit[0] == "fact" and counting.filtered == 1
    (hit,) = nearest_allowed(collection, _unit(base[None, :]), NOT_DUPLICATED, len(rows) + 1,
                             within=0.99)
    assert hit is None


class Losing(Counting):
    """The collection as a racing writer leaves it: ``get`` no longer finds ``gone``, and
    the unfiltered query brings back only its first ``short`` hits."""

    def __init__(self, collection, gone: set[str] = frozenset(), short: int | None = None):
        super().__init__(collection)
        self.gone, self.short = gone, short

    def query(self, **kwargs):
        found = super().query(**kwargs)
        if self.short is not None and "where" not in kwargs:
            found = {key: [row[:self.short] for row in rows] if rows else rows
                     for key, rows in found.items()}
        return found

    def get(self, **kwargs):
        got = super().get(**kwargs)
        kept = [n for n, i in enumerate(got["ids"]) if i not in self.gone]
        return {"ids": [got["ids"][n] for n in kept], "metadatas": [got["metadatas"][n] for n in kept]}


def _close_pair(collection):
    """A query vector, a summary nearest to it, a fact just behind (both at ~0.99)."""
    base = np.zeros(16, dtype=np.float32)
    base[0] = 1.0
    summary, fact = base.copy(), base.copy()
    summary[1], fact[1] = 0.05, 0.1
    filler = _unit(np.random.default_rng(5).standard_normal((20, 16)))
    collection.add(ids=["summary", "fact", *[f"x{i}" for i in range(20)]],
                   embeddings=np.concatenate([_unit(np.stack([summary, fact])), filler]),
                   metadatas=[{"kind": "fact"}, {"kind": "fact"}] + [{"kind": "note"}] * 20)
    return _unit(base[None, :])


def test_within_a_hit_gone_before_its_kind_is_read_hides_nothing(collection):
    query = _close_pair(collection)
    (hit,) = nearest_allowed(Losing(collection, gone={"summary"}), query, NOT_DUPLICATED, 22,
                             within=0.95)
    assert hit is not None and hit[0] == "fact"


def test_within_asks_again_when_fewer_hits_came_and_all_were_excluded(collection):
    query = _close_pair(collection)
    collection.update(ids=["summary", "fact"], metadatas=[{"kind": "summary"}, {"kind": "event"}])
    collection.add(ids=["behind"], embeddings=_unit(np.array([[1.0, 0.15] + [0.0] * 14])),
                   metadatas=[{"kind": "fact"}])
    losing = Losing(collection, short=2)  # two hits came, both close, both excluded
    (hit,) = nearest_allowed(losing, query, NOT_DUPLICATED, 23, within=0.95)
    assert hit is not None and hit[0] == "behind" and losing.filtered == 1
