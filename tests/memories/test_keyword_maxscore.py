"""The bounded keyword search (apps/memories/keyword_topk.py): the same top as the full
pass, scores bit for bit and order (ties by id), over random corpora with Zipfian
vocabularies, removals, uncompacted tails, filters and context weights; and it does
skip postings (``NamespaceIndex.scored``)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.memories import keyword_topk
from apps.memories.keyword_index import NamespaceIndex


@pytest.fixture(autouse=True)
def _bounded_at_any_size(monkeypatch):
    """The bounded path from the first posting (it is left to the full pass below
    ``MIN_POSTINGS`` in production, where that is the cheaper)."""
    monkeypatch.setattr(keyword_topk, "MIN_POSTINGS", 0)


VOCAB = [f"w{i}" for i in range(60)]
ZIPF = [1 / (rank + 1) ** 1.1 for rank in range(len(VOCAB))]


def _words(rng: random.Random, low: int, high: int) -> list[str]:
    return rng.choices(VOCAB, weights=ZIPF, k=rng.randint(low, high))


def _memory_id(i: int) -> str:
    return f"{(i * 7919) % 100_003:032x}"  # ids not in insertion order: ties by id matter


def _corpus(seed: int, docs: int, build: str, removals: float, duplicates: bool) -> NamespaceIndex:
    """Documents as lists of index terms (own words, context words), made by ``build``:
    "load" (CSR only), "add" (tail only), "mixed" (CSR, then a tail), "compacted"
    (mixed, removals, compacted, then more adds and removals)."""
    rng = random.Random(seed)
    rows = []
    for i in range(docs):
        if duplicates and rows and rng.random() < 0.3:  # ties: the same words again
            _, own, ctx = rows[rng.randrange(len(rows))]
        else:
            own = _words(rng, 1, 12)
            ctx = _words(rng, 0, 8) if rng.random() < 0.5 else []
        rows.append((_memory_id(i), own, ctx))
    index = NamespaceIndex(1)
    half = len(rows) // 2
    if build == "load":
        index.load(rows)
    elif build == "add":
        index.add(rows)
    else:
        index.load(rows[:half])
        index.add(rows[half:])
    ids = [memory_id for memory_id, _, _ in rows]
    index.remove(rng.sample(ids, int(removals * len(ids))))
    if build == "compacted":
        index.compact()
        extra = [(_memory_id(docs + i), _words(rng, 1, 10), []) for i in range(docs // 4)]
        index.add(extra)
        index.add(rows[:docs // 10])  # replaced: new numbers, tombstones for the old
        index.remove(rng.sample(ids, int(removals * len(ids) / 2)))
    return index


def _query(rng: random.Random) -> list[str]:
    query = _words(rng, 1, 6)
    if rng.random() < 0.3:
        query.append("absent")
    return query


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), docs=st.integers(1, 400),
       build=st.sampled_from(["load", "add", "mixed", "compacted"]),
       removals=st.sampled_from([0.0, 0.1, 0.5]), duplicates=st.booleans(),
       weight=st.sampled_from([0.0, 0.25, 1.0, 2]), limit=st.integers(1, 30),
       filtered=st.sampled_from([None, 0.05, 0.5, 0.95]))
def test_bounded_search_equals_the_full_pass(seed, docs, build, removals, duplicates, weight, limit,
                                             filtered):
    index = _corpus(seed, docs, build, removals, duplicates)
    rng = random.Random(seed + 1)
    allowed = None
    if filtered is not None:
        allowed = np.array([rng.random() < filtered for _ in range(len(index._ids))], dtype=bool)
    for _ in range(5):
        query = _query(rng)
        full = index.search(query, weight, limit, allowed, exhaustive=True)
        bounded = index.search(query, weight, limit, allowed)
        assert bounded == full, (query, weight, limit)  # floats compared exactly
    assert not index._buffer.any()


def test_ties_at_the_edge_keep_the_smallest_ids():
    """Many documents of the same words: the limit cuts through a tie, settled by id."""
    index = NamespaceIndex(1)
    rows = [(_memory_id(i), ["rare", "common"] if i % 5 == 0 else ["common", "other"], [])
            for i in range(2000)]
    index.load(rows)
    for limit in (1, 7, 400, 401, 1000):
        full = index.search(["rare", "common"], 1.0, limit, exhaustive=True)
        assert index.search(["rare", "common"], 1.0, limit) == full
        assert [pk for pk, _ in full[:limit]] == sorted(pk for pk, _ in full[:min(limit, 400)]) + \
            [pk for pk, _ in full[400:limit]]


def test_common_terms_are_not_scored_in_full():
    """A rare term and a common one: the common term's postings are looked up for the
    rare term's documents only, and the result is still the full pass's."""
    rng = random.Random(5)
    rows = []
    for i in range(20_000):
        own = ["common", *_words(rng, 2, 8)]
        if i % 500 == 0:
            own += ["rare"] * (1 + i % 3)
        rows.append((_memory_id(i), own, []))
    index = NamespaceIndex(1)
    index.load(rows)
    full = index.search(["common", "rare"], 1.0, 10, exhaustive=True)
    every = index.scored
    assert every == 20_000 + 40
    assert index.search(["common", "rare"], 1.0, 10) == full
    assert index.scored <= 40  # (some of) the rare term's postings, none of the common one's
    # and when the common term could matter (fewer rare documents than asked), all of them
    assert index.search(["common", "rare"], 1.0, 50) == index.search(["common", "rare"], 1.0, 50,
                                                                     exhaustive=True)


def test_a_term_of_every_document_is_never_scored_in_full():
    """FTS5 clamps the idf of a term in over half the rows to 1e-6: its bound is tiny."""
    rows = [(_memory_id(i), ["the", f"t{i % 50}", "x" if i % 3 else "y"], []) for i in range(5000)]
    index = NamespaceIndex(1)
    index.load(rows)
    query = ["x", "the", "t7"]
    full = index.search(query, 1.0, 10, exhaustive=True)
    assert index.search(query, 1.0, 10) == full
    assert index.scored == 100  # t7's postings only


def test_postings_stay_sorted_by_document():
    """What the binary search relies on, through builds, adds, removals and compactions."""
    rng = random.Random(3)
    index = _corpus(11, 300, "compacted", 0.2, True)
    for round_ in range(3):
        index.add([(f"{round_:08x}{i:024x}", _words(rng, 1, 10), _words(rng, 0, 3)) for i in range(100)])
        index.remove([pk for pk in rng.sample(index._ids, 40)])
        for term in VOCAB:
            docs = index.postings(term)[0]
            assert (np.diff(docs) > 0).all(), term
        if round_ == 1:
            index.compact()


def test_bounds_hold_every_posting():
    index = _corpus(7, 400, "compacted", 0.1, False)
    for term in VOCAB:
        docs, own, ctx = index.postings(term)
        if not len(docs):
            continue
        own_max, ctx_max, length = index.bounds(term)
        assert own.max() <= own_max and ctx.max() <= ctx_max
        assert index._length[docs].min() >= length


def test_without_bounding_every_posting_is_scored(monkeypatch):
    """The counter the skip test reads does count: with top_k off, all postings are scored."""
    monkeypatch.setattr("apps.memories.keyword_index.top_k", lambda *args: None)
    rows = [(_memory_id(i), ["common"] + (["rare"] if i % 100 == 0 else []), []) for i in range(3000)]
    index = NamespaceIndex(1)
    index.load(rows)
    index.search(["common", "rare"], 1.0, 5)
    assert index.scored == 3030
    assert keyword_topk.top_k is not None


def test_context_occurrences_count_in_the_bound():
    """With a context weight, a common term's occurrences in the context can outweigh the
    rare term: its bound must count them (own words only with weight 0)."""
    rows = [(_memory_id(i), [f"f{i % 100}", "g", "h"], []) for i in range(2000)]
    rows += [(_memory_id(2000 + i), ["rare"] + ["pad"] * 30, []) for i in range(20)]
    rows += [(_memory_id(3000 + i), ["common"] + ["pad"] * 30, []) for i in range(150)]
    rows += [(_memory_id(4000 + i), ["pad"] * 30, ["common"] * 30) for i in range(5)]
    index = NamespaceIndex(1)
    index.load(rows)
    for weight in (0.0, 2.0):
        full = index.search(["rare", "common"], weight, 10, exhaustive=True)
        assert index.search(["rare", "common"], weight, 10) == full
    assert {pk for pk, _ in full[:5]} == {_memory_id(4000 + i) for i in range(5)}
