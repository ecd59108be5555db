"""Consolidation's neighbours among the contents' vectors (apps/lifecycle/neighbours.py):
exact up to a few thousand memories, an inverted file above, each memory never its own
neighbour, the same answer for the same input."""

from __future__ import annotations

import numpy as np
import pytest

from apps.lifecycle import neighbours


def _clustered(n: int, dim: int = 16, clusters: int = 40, seed: int = 3) -> np.ndarray:
    """Unit vectors in tight clusters (near duplicates) around random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    rows = centres[rng.integers(0, clusters, n)] + rng.normal(scale=0.05, size=(n, dim))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _exact(vectors: np.ndarray, k: int) -> list[set[int]]:
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    return [set(np.argsort(-row)[:k].tolist()) for row in similarity]


def test_small_sets_are_searched_exactly_best_first_never_itself():
    vectors = _clustered(300)
    found = neighbours.nearest(vectors, 5)
    assert [{i for i, _ in row} for row in found] == _exact(vectors, 5)
    for row_index, row in enumerate(found):
        assert row_index not in {i for i, _ in row}
        values = [v for _, v in row]
        assert values == sorted(values, reverse=True)
        assert values[0] == pytest.approx(float(vectors[row_index] @ vectors[row[0][0]]), abs=1e-5)


def test_the_inverted_file_finds_near_duplicates_and_is_repeatable(monkeypatch):
    monkeypatch.setattr(neighbours, "EXACT_UP_TO", 100)
    vectors = _clustered(2000)
    done: list[int] = []
    found = neighbours.nearest(vectors, 10, progress=done.append)
    exact = _exact(vectors, 10)
    overlap = np.mean([len({i for i, _ in row} & want) / 10 for row, want in zip(found, exact, strict=True)])
    assert overlap > 0.95
    assert sum(done) == len(vectors)
    assert all(row_index not in {i for i, _ in row} for row_index, row in enumerate(found))
    assert neighbours.nearest(vectors, 10) == found


def test_fewer_than_two_memories_have_no_neighbours():
    assert neighbours.nearest(np.zeros((0, 4), dtype=np.float32), 10) == []
    assert neighbours.nearest(np.ones((1, 4), dtype=np.float32) / 2, 10) == [[]]
    two = np.eye(2, dtype=np.float32)
    assert [[i for i, _ in row] for row in neighbours.nearest(two, 10)] == [[1], [0]]
