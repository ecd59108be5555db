"""The small index (apps/memories/small_index.py): a namespace's vectors in one SQLite
file, searched exactly, until the namespace outgrows ``MEMORYWEB_SMALL_INDEX_LIMIT``."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from apps.memories.small_index import SmallIndex


def _unit_rows(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    return rng.normal(size=(n, dim)).astype(np.float32)


def _cosine_top(vectors: np.ndarray, query: np.ndarray, rows: list[int], n: int,
                ids: list[str]) -> list[str]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = unit @ (query / np.linalg.norm(query))
    ranked = sorted(rows, key=lambda k: (-float(scores[k]), ids[k]))
    return [ids[k] for k in ranked[:n]]


@pytest.fixture
def index(tmp_path):
    found = SmallIndex(tmp_path)
    yield found
    found.close()


def test_query_is_exact_cosine_order_with_the_filter_applied(index):
    rng = np.random.default_rng(7)
    vectors = _unit_rows(rng, 300) * rng.uniform(0.5, 3.0, size=(300, 1)).astype(np.float32)
    ids = [f"id-{k:03d}" for k in range(300)]
    metas = [{"kind": "fact" if k % 3 else "event", "agent_id": f"a{k % 4}"} for k in range(300)]
    index.create("c")
    index.upsert("c", ids, vectors, metas)
    for _ in range(20):
        query = rng.normal(size=16).astype(np.float32)
        hits = index.query("c", query, 10, None)
        assert [i for i, _ in hits] == _cosine_top(vectors, query, list(range(300)), 10, ids)
        chosen = [k for k in range(300) if metas[k]["kind"] == "fact" and metas[k]["agent_id"] == "a1"]
        filtered = index.query("c", query, 7, {"$and": [{"kind": "fact"}, {"agent_id": "a1"}]})
        assert [i for i, _ in filtered] == _cosine_top(vectors, query, chosen, 7, ids)
        best = hits[0]
        unit = vectors[ids.index(best[0])] / np.linalg.norm(vectors[ids.index(best[0])])
        assert best[1] == pytest.approx(float(unit @ (query / np.linalg.norm(query))), abs=1e-5)


def test_equal_scores_are_ordered_by_id(index):
    index.create("c")
    same = np.ones((5, 4), dtype=np.float32)
    index.upsert("c", ["e", "c", "a", "d", "b"], same, [{"k": 1}] * 5)
    assert [i for i, _ in index.query("c", np.ones(4, dtype=np.float32), 3, None)] == ["a", "b", "c"]


def test_an_upsert_replaces_every_filter_field_and_a_delete_removes_the_row(index):
    index.create("c")
    vector = np.ones((1, 4), dtype=np.float32)
    index.upsert("c", ["m"], vector, [{"t:urgent": True, "kind": "fact"}])
    assert index.ids_where("c", {"t:urgent": True}) == ["m"]
    index.upsert("c", ["m"], vector * 2, [{"kind": "fact"}])  # the edit dropped the tag
    assert index.ids_where("c", {"t:urgent": True}) == []
    assert index.count("c") == 1
    np.testing.assert_array_equal(index.embeddings("c", ["m"])["m"], vector[0] * 2)
    index.delete("c", ["m", "never-stored"])
    assert index.count("c") == 0
    assert index.query("c", vector[0], 5, None) == []


def test_update_metadata_keeps_the_vectors_and_leaves_unknown_ids_out(index):
    index.create("c")
    vectors = np.arange(8, dtype=np.float32).reshape(2, 4) + 1
    index.upsert("c", ["a", "b"], vectors, [{"kind": "fact"}, {"kind": "fact"}])
    found = index.update_metadata("c", ["a", "zzz"], [{"kind": "note"}, {"kind": "note"}])
    assert set(found) == {"a"}
    np.testing.assert_array_equal(found["a"], vectors[0])
    assert index.metadatas("c", ["a", "b", "zzz"]) == {"a": {"kind": "note"}, "b": {"kind": "fact"}}
    assert index.count("c") == 2


def test_nearest_skips_excluded_kinds_and_answers_none_below_the_bound(index):
    index.create("c")
    vectors = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0]], dtype=np.float32)
    index.upsert("c", ["event", "fact", "far"], vectors,
                 [{"kind": "event"}, {"kind": "fact"}, {"kind": "fact"}])
    query = np.array([[1, 0, 0], [0, 0, 1]], dtype=np.float32)
    (near, none) = index.nearest("c", query, ("event", "summary"), within=0.5)
    assert near is not None and near[0] == "fact" and near[1] > 0.99
    assert none is None
    assert index.nearest("c", query[:1], ("event", "summary"), within=0.999) == [None]
    assert index.nearest("empty", query, ("event",), within=None) == [None, None]


def test_collections_are_apart_and_a_drop_takes_every_row(index, tmp_path):
    index.create("one")
    index.create("two")
    vector = np.ones((1, 4), dtype=np.float32)
    index.upsert("one", ["x"], vector, [{"kind": "fact"}])
    index.upsert("two", ["x"], vector * 3, [{"kind": "note"}])
    assert index.metadatas("one", ["x"]) == {"x": {"kind": "fact"}}
    index.drop("one")
    assert not index.holds("one") and index.holds("two")
    assert index.count("one") == 0 and index.count("two") == 1
    with sqlite3.connect(tmp_path / "small_index.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM vectors WHERE collection = 'one'").fetchone() == (0,)


def test_what_is_stored_survives_a_restart(tmp_path):
    first = SmallIndex(tmp_path)
    first.create("c")
    first.upsert("c", ["a", "b"], np.eye(2, 4, dtype=np.float32), [{"k": "v"}, {"k": 2}])
    first.close()
    again = SmallIndex(tmp_path)
    try:
        assert again.holds("c") and again.count("c") == 2
        assert again.metadatas("c", ["b"]) == {"b": {"k": 2}}
        assert again.ids_page("c", 0, 1) == ["a"] and again.ids_page("c", 1, 5) == ["b"]
        assert again._db.execute("PRAGMA page_size").fetchone() == (16384,)
        assert again._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert again._db.execute("PRAGMA secure_delete").fetchone() == (1,)
    finally:
        again.close()


def test_a_deleted_vector_leaves_no_bytes_in_the_files(index, tmp_path):
    from tests.helpers.vector_index import files_holding

    rng = np.random.default_rng(3)
    vectors = _unit_rows(rng, 50, 384)
    index.create("c")
    index.upsert("c", [f"m{k}" for k in range(50)], vectors, [{"kind": "fact"}] * 50)
    assert files_holding(vectors[7], tmp_path), "the test cannot see the vector before"
    index.delete("c", ["m7"])
    index.checkpoint()
    assert files_holding(vectors[7], tmp_path) == []
    assert files_holding(vectors[8], tmp_path)  # the others stay


def test_the_cache_is_bounded_and_a_write_is_seen_by_the_next_read(index, monkeypatch):
    from apps.memories import small_index

    monkeypatch.setattr(small_index, "CACHE_VECTORS", 10)
    for name in ("a", "b", "c"):
        index.create(name)
        index.upsert(name, [f"{name}{k}" for k in range(6)], np.eye(6, 6, dtype=np.float32),
                     [{"kind": "fact"}] * 6)
        assert index.query(name, np.eye(6, dtype=np.float32)[0], 1, None)[0][0] == f"{name}0"
    assert index._cached <= 10 or len(index._cache) == 1
    index.upsert("a", ["a9"], np.eye(1, 6, dtype=np.float32) * 5, [{"kind": "fact"}])
    assert index.count("a") == 7
    assert [i for i, _ in index.query("a", np.eye(6, dtype=np.float32)[0], 2, None)] == ["a0", "a9"]


def test_filter_fields_are_parsed_only_when_a_read_needs_them(index):
    index.create("c")
    index.upsert("c", ["b", "a"], np.eye(2, 3, dtype=np.float32), [{"kind": "fact"}, {"kind": "event"}])
    assert [i for i, _ in index.query("c", np.ones(3, dtype=np.float32), 5, None)] == ["a", "b"]
    assert index._cache["c"]._parsed is None  # a query without a filter read no JSON
    assert index.ids_where("c", {"kind": "event"}) == ["a"]
    assert index._cache["c"]._parsed == [{"kind": "event"}, {"kind": "fact"}]  # in id order


def test_vectors_that_are_not_unit_length_are_scored_by_cosine(index):
    index.create("c")
    index.upsert("c", ["long", "short"], np.array([[10, 0], [0.1, 0.1]], dtype=np.float32),
                 [{}, {}])
    hits = index.query("c", np.array([1, 1], dtype=np.float32), 2, None)
    assert [i for i, _ in hits] == ["short", "long"]
    assert [round(s, 4) for _, s in hits] == [1.0, 0.7071]
    np.testing.assert_array_equal(index.embeddings("c", ["long"])["long"], [10, 0])


def test_a_filter_chroma_would_refuse_is_refused(index):
    index.create("c")
    index.upsert("c", ["a"], np.ones((1, 2), dtype=np.float32), [{"n": 1}])
    with pytest.raises(ValueError):
        index.query("c", np.ones(2, dtype=np.float32), 1, {"n": {"$gt": "x"}})
    with pytest.raises(ValueError):
        index.query("c", np.ones(2, dtype=np.float32), 1, {"n": {"$like": 1}})


def test_a_log_a_reader_keeps_is_reported_not_taken_as_emptied(index, tmp_path):
    index.create("c")
    index.upsert("c", ["a", "b"], np.eye(2, 4, dtype=np.float32), [{}, {}])
    reader = sqlite3.connect(tmp_path / "small_index.sqlite3")
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM vectors").fetchone() == (2,)  # a snapshot
        index.delete("c", ["a"])
        index._db.execute("PRAGMA busy_timeout = 100")
        with pytest.raises(RuntimeError, match="write-ahead log"):
            index.checkpoint()
    finally:
        reader.close()
    index.checkpoint()  # the reader gone: emptied
