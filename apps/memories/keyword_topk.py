"""The top of a keyword search without scoring every posting of its terms.

keyword_index.py's full pass adds every query term's BM25 contribution at every posting,
so its cost grows with the namespace. This finds the documents that can reach the top
``limit`` from bounds, then scores only those, exactly:

1. *Impact order.* Each compaction (and build) also lays each term's postings out by
   (own occurrences, context occurrences), then document length: within such a group
   a posting's contribution ``idf * f * (k1 + 1) / (f + k1 * (1 - b + b * D / avgdl))``
   falls as ``D`` grows, whatever the query's context weight and the current avgdl.
2. *Bounds by length.* Per term and distinct document length ``D``, the most the term
   can add to a document of that length: the best group whose shortest document is not
   longer (the tail, postings added since the last compaction, counts as one group of
   its most occurrences and shortest document).
3. *theta.* The shortest documents of the rarest term's groups (``_PROBE`` each) and
   of the tails are scored exactly; their ``limit``-th best (allowed, live documents
   only) is a lower bound of the final ``limit``-th score.
4. *Candidates.* Terms in order, rarest first; a document is looked for under the
   first of its terms: it can reach theta only if that term's contribution plus the
   bounds of the terms after it at its length do, which in each group is a prefix
   (found by one binary search per group, ``_impact_key``). Tails are always taken.
   Any other document scores below theta: it can neither enter the top nor tie it.
5. *Exact scores.* The candidates' scores are computed term by term in the query's
   order with the full pass's float operations (a term's postings found by binary
   search, sorted by document: see below, or by one pass reading a mark per document
   when there are many candidates), so scores are bit for bit FTS5's and the order,
   ties by id, the same.

When the query's postings are fewer than ``MIN_POSTINGS`` (the full pass is then the
cheaper), the probe finds fewer than ``limit`` allowed documents, or the candidates'
postings pass ``_MAX_SHARE`` of the query's, :func:`top_k` returns None and the caller
makes the full pass. Float rounding is covered by a relative margin (``_SLACK``) on
every comparison, far above the few ulps a sum of a handful of terms can be off.

A term's postings are sorted by document: a build appends documents in order and sorts
by term stably; a new document takes the next number, so the tail only holds documents
above the CSR slice's, in order; a compaction renumbers keeping order and sorts by term
stably again (tests/memories/test_keyword_maxscore.py checks it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from apps.memories.keyword_index import NamespaceIndex

K1 = 1.2
B = 0.75
#: Relative margin on bounds: a float sum of a few terms is off by a few ulps (1e-16).
_SLACK = 1e-9
#: Give up (full pass) when the candidates' postings pass this share of the query's.
_MAX_SHARE = 0.7
#: Below this many postings in the query's terms the full pass is the cheaper (measured
#: by bench/keyword_topk.py: its few numpy calls against this path's few dozen).
MIN_POSTINGS = 80_000
#: A binary search in a term's postings costs about this many postings' pass.
_SEARCH_COST = 16
#: The postings of each group (its shortest documents) scored first for theta.
_PROBE = 64
_GROUP_KEY = 2**31  # impact keys: group * _GROUP_KEY + document length


_EMPTY = np.zeros(0, dtype=np.int32)


@dataclass
class _Term:
    term: str
    docs: np.ndarray
    own: np.ndarray
    ctx: np.ndarray
    idf: float


def _terms(index: NamespaceIndex, terms: Sequence[str], weight: float, rows: int) -> list[_Term]:
    """The query's terms that match a live document, in the query's order, with their idf."""
    found = []
    for term in terms:
        docs, own, ctx = index.postings(term)
        if not len(docs):
            continue
        df = index.frequency(term, docs, own, weight)
        if not df:
            continue
        idf = math.log((rows - df + 0.5) / (df + 0.5))
        if idf <= 0.0:
            idf = 1e-6
        found.append(_Term(term, docs, own, ctx, idf))
    return found


def _exact(terms: list[_Term], docs: np.ndarray, weight: float, norm: np.ndarray,
           where: np.ndarray) -> np.ndarray:
    """The scores of these (live, sorted, distinct) documents: each term's contribution
    added in the query's order as the full pass adds them (0.0 where a term is not:
    ``x + 0.0`` is ``x``). A term's postings are found by binary search, or, when they
    are few against the documents, by a pass over them reading ``where`` (document ->
    its place here + 1; all 0, and left so)."""
    scores = np.zeros(len(docs), dtype=np.float64)
    marked = False
    try:
        for term in terms:  # in the query's order
            if len(docs) * _SEARCH_COST < len(term.docs):
                at = np.minimum(np.searchsorted(term.docs, docs), len(term.docs) - 1)
                hit = term.docs[at] == docs
                if weight <= 0:
                    hit &= term.own[at] > 0
                at, place = at[hit], np.flatnonzero(hit)
            else:
                if not marked:
                    where[docs] = np.arange(1, len(docs) + 1, dtype=np.int32)
                    marked = True
                found = where[term.docs]
                at = np.flatnonzero(found)
                if weight <= 0:
                    at = at[term.own[at] > 0]
                place = found[at] - 1
            if not len(at):
                continue
            if weight > 0:
                freq = term.own[at] + weight * term.ctx[at]
            else:
                freq = term.own[at].astype(np.float64)
            scores[place] += term.idf * ((freq * (K1 + 1.0)) / (freq + norm[docs[place]]))
    finally:
        if marked:
            where[docs] = 0
    return scores


@dataclass
class _Groups:
    """A term's postings by impact: per group its occurrences ``f``, CSR range and the
    contribution it gives at each distinct document length (``reach``, shape groups x
    lengths; 0 below the group's shortest document)."""
    ids: np.ndarray  # the groups' numbers (``index._group_start`` positions)
    starts: np.ndarray
    ends: np.ndarray
    contribution: np.ndarray
    bound: np.ndarray  # per length, the most the term adds to a document of that length
    tail: np.ndarray  # documents of the postings not yet compacted


def _groups(index: NamespaceIndex, term: _Term, weight: float, grid: np.ndarray,
            norms: np.ndarray) -> _Groups:
    g0, g1, c0, c1, _ = index.impact_groups(term.term)
    starts = index._group_start[g0:g1]
    ends = np.append(starts[1:], c1).astype(np.int64)
    own, ctx = index._group_own[g0:g1], index._group_ctx[g0:g1]
    freq = own + weight * ctx if weight > 0 else own.astype(np.float64)
    used = freq > 0
    ids = np.arange(g0, g1, dtype=np.int64)[used]
    starts, ends, freq = starts[used], ends[used], freq[used]
    shortest = index._impact_key[starts] - ids * _GROUP_KEY
    tail = term.docs[c1 - c0:]
    if len(tail):  # the tail as one more group: its most occurrences, its shortest document
        tail_own, tail_ctx, tail_short = index._tail_bounds[term.term]
        most = tail_own + weight * tail_ctx if weight > 0 else float(tail_own)
        if most > 0:
            freq, shortest = np.append(freq, most), np.append(shortest, tail_short)
    f = np.asarray(freq, dtype=np.float64)[:, None]
    contribution = term.idf * (f * (K1 + 1.0)) / (f + norms[None, :])
    reach = np.where(grid[None, :] >= shortest[:, None], contribution, 0.0)
    bound = reach.max(axis=0) if len(reach) else np.zeros(len(grid))
    return _Groups(ids, starts, ends, contribution[:len(starts)], bound, tail)


def top_k(index: NamespaceIndex, terms: Sequence[str], weight: float, limit: int,
          allowed: np.ndarray | None, rows: int, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Documents and exact scores among which the best ``limit`` are (all of them, ties
    included), or None when bounding does not pay (the caller makes the full pass).
    Sets ``index.scored`` to the postings looked at."""
    query = _terms(index, terms, weight, rows)
    total = sum(len(t.docs) for t in query)
    if not query or total < MIN_POSTINGS:
        return None
    norm = index._norms(rows, size)
    grid = index.lengths(size)
    norms = K1 * (1 - B + B * grid.astype(np.float64) / (index._tokens / rows))
    groups = [_groups(index, t, weight, grid, norms) for t in query]
    # theta: the limit-th best exact score of each term's most telling postings (the
    # shortest documents of each group): a lower bound of the final limit-th score
    depth = max(limit, _PROBE)
    rarest = groups[min(range(len(query)), key=lambda i: len(query[i].docs))]
    probe = [index._by_impact[a:min(a + depth, b)]
             for a, b in zip(rarest.starts.tolist(), rarest.ends.tolist(), strict=True)]
    probe += [g.tail[:depth] for g in groups]
    found = _live(index, _union(index, probe, size), allowed)
    if len(found) < limit:
        return None
    where = index.where(size)
    theta = np.partition(_exact(query, found, weight, norm, where), len(found) - limit)[len(found) - limit]
    theta *= 1 - _SLACK
    # A document is looked for under the first of its terms in this order (rarest first):
    # it reaches theta only if that term's contribution plus what the terms after it can
    # add at its length does, which is, in each group of that term, a prefix.
    order = sorted(range(len(query)), key=lambda i: len(query[i].docs))
    after = np.zeros(len(grid), dtype=np.float64)
    picked, looked = [], 0
    for i in reversed(order):
        g = groups[i]
        others = np.maximum.accumulate(after[::-1])[::-1]  # made non-increasing in length
        able = ((g.contribution + others[None, :]) * (1 + _SLACK) >= theta).sum(axis=1)
        usable = np.flatnonzero(able)
        if len(usable):
            # each group's prefix at once: keys (group, length) sort the impact arrays
            key = g.ids[usable] * _GROUP_KEY + grid[able[usable] - 1]
            cuts = np.searchsorted(index._impact_key, key, side="right")
            docs = index._by_impact[_ranges(g.starts[usable], cuts)]
            picked.append(docs)
            looked += len(docs)
        picked.append(g.tail)  # not grouped: always scored
        looked += len(g.tail)
        after = after + g.bound
    index.scored = looked
    if looked > _MAX_SHARE * total:
        return None
    found = _live(index, _union(index, picked, size), allowed)
    return found, _exact(query, found, weight, norm, where)


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The positions of these ranges, concatenated."""
    sizes = ends - starts
    starts, ends, sizes = starts[sizes > 0], ends[sizes > 0], sizes[sizes > 0]
    if not len(sizes):
        return np.zeros(0, dtype=np.int64)
    steps = np.ones(int(sizes.sum()), dtype=np.int64)
    steps[0] = starts[0]
    edges = np.cumsum(sizes)[:-1]
    steps[edges] = starts[1:] - ends[:-1] + 1
    return np.cumsum(steps)


def _union(index: NamespaceIndex, parts: list[np.ndarray], size: int) -> np.ndarray:
    """The documents of these arrays, once each, sorted (a byte mask: no sort, no hash)."""
    seen = index.seen(size)
    for docs in parts:
        seen[docs] = True
    found = np.flatnonzero(seen[:size])
    seen[found] = False
    return found


def _live(index: NamespaceIndex, docs: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    if index._dead:
        docs = docs[index._alive[docs]]
    return docs if allowed is None else docs[allowed[docs]]
