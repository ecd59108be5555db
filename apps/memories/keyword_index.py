"""An in-memory BM25 keyword index of one namespace: FTS5's scoring, numpy postings.

FTS5 computes bm25() for every row that matches the OR query (~3 µs a row), so the
keyword stage grew with the namespace (docs/recall.md). This index scores the same
matches with numpy (a few ns a posting) and keeps only the top ``limit``, so what grows
with the namespace is a vectorised pass over the query terms' postings, not a per-row
function call. It ranks every namespace with ``MEMORYWEB_KEYWORD_ENGINE = "memory"``, and
on SQLite the small namespaces, which have no FTS5 table (small_keywords.py);
keyword_index_log.py keeps one per namespace in step with SQL across processes and
bounds their memory.

**The same ranking as the namespace's FTS5 table** (lexical.py, ``_create``):

- *Tokens*: FTS5's ``porter unicode61 remove_diacritics 2``: lower case, diacritics
  removed, runs of letters and digits (anything else separates), each stemmed by the
  Porter algorithm (lexical's thread-local ``_stem``) unless shorter than 3 or longer
  than 64 bytes, as FTS5's porter tokenizer passes those through unchanged.
- *Fields*: the memory's own words and its conversation context's first
  ``CONTEXT_CHARS`` characters (context.py), the context's occurrences weighted by
  ``weight`` (FTS5 ``bm25(t, 0, 1, weight, 0)``; 0: own words only, as a lookup asks).
- *Score* (fts5_aux.c ``fts5Bm25Function``), per query term (a "phrase"), summed in the
  query's order: ``idf * f * (k1 + 1) / (f + k1 * (1 - b + b * D / avgdl))`` with
  k1 1.2, b 0.75, ``f`` the weighted occurrences in the row, ``D`` the row's tokens in
  *all* columns and ``avgdl`` the namespace's tokens over its rows (FTS5 normalises by
  the whole row, not per column), ``idf = log((N - df + 0.5) / (df + 0.5))``, raised to
  1e-6 when not above 0 (FTS5's clamp for terms in over half the rows), ``N`` the
  namespace's rows and ``df`` the rows that match the term in the searched columns.
- *Order*: score descending, then memory id (the SQL statement's ``ORDER BY``).

Statistics are this namespace's only: another tenant's words never move a score.

**Layout**: postings in CSR form (per term a slice of three int32 arrays: document,
occurrences in the memory's words, in its context) plus a tail of postings added since
the last compaction; removed documents are tombstones (a mask; N and the token total
drop at once, ``df`` counts live documents) until :meth:`NamespaceIndex.compact` drops
them with the tail merged in (when either passes a share of the index). The CSR postings
are also kept in impact order (by occurrences, then document length) for
keyword_topk.py, which finds a large query's top from bounds and scores only the
documents that can reach it (the same results as the full pass, bit for bit).
"""

from __future__ import annotations

import math
import threading
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from apps.memories.keyword_tokens import _chunk, query_terms, tokens  # noqa: F401 (query_terms, tokens re-exported)
from apps.memories.keyword_topk import K1, B, top_k

#: Compact when the tail holds more than this share of the postings (or dead documents
#: pass this share of the documents).
COMPACT_SHARE = 0.2
_COMPACT_MIN = 5_000
_EMPTY = np.zeros(0, dtype=np.int32)
#: load() counts its rows' postings a chunk of about this many characters at a time (its
#: words are Python objects until then).
_LOAD_CHARS = 1 << 21

def _counts(content: str | list[str], context: str | list[str] | None) -> tuple[Counter, Counter]:
    """A row's term counts: its own words and its context's first ``CONTEXT_CHARS``
    characters, tokenized here; or, from an encrypted namespace (blind_tokens.py), lists
    of its blind tokens, already normalised and cut, counted as they are."""
    from apps.memories.lexical import CONTEXT_CHARS

    if isinstance(content, list):
        return Counter(content), Counter(context or ())
    own = Counter(tokens(content))
    return own, (Counter(tokens(context[:CONTEXT_CHARS])) if context else Counter())


class NamespaceIndex:
    """One namespace's documents (memories) and postings; not thread-safe by itself
    (keyword_index_log.py holds ``lock`` around every use)."""

    def __init__(self, namespace_id: int) -> None:
        self.namespace_id = namespace_id
        self.lock = threading.RLock()
        #: The last change-log sequence number applied (keyword_index_log.py).
        self.applied = 0
        #: ``time.time()`` of the last sync with the log.
        self.synced_at = 0.0
        #: Ids applied inside a transaction that may roll back: re-read at the next sync.
        self.pending: set[str] = set()
        #: Built inside a transaction: built again at the next sync outside one.
        self.provisional = False
        self._ids: list[str] = []  # document -> memory id (32 hex digits, as stored)
        self._doc: dict[str, int] = {}  # live documents only
        self._length = np.zeros(64, dtype=np.int32)
        self._alive = np.zeros(64, dtype=bool)
        self._keys = np.zeros(64, dtype="S32")  # the ids again, for ties sorted in numpy
        self._tokens = 0  # live documents' tokens, all columns
        self._dead = 0
        self._vocab: dict[str, int] = {}
        self._offsets = np.zeros(1, dtype=np.int64)
        self._docs = self._own = self._ctx = _EMPTY
        self._tail: dict[str, list[tuple[int, int, int]]] = {}
        self._tail_size = 0
        #: Per term of the CSR arrays / of the tail: the most own and context occurrences
        #: of a posting and the shortest document holding it (dead ones included), which
        #: bound a posting's contribution (keyword_topk.py takes the tail's).
        self._own_max = self._ctx_max = self._len_min = _EMPTY
        self._by_impact = self._group_start = _EMPTY
        self._group_own = self._group_ctx = _EMPTY
        self._groups = np.zeros(1, dtype=np.int64)
        self._impact_key = np.zeros(0, dtype=np.int64)
        self._impact_ready = False
        self._distinct_lengths, self._lengths_key = _EMPTY, -1
        self._tail_bounds: dict[str, list[int]] = {}
        self._df: dict[tuple[str, bool], int] = {}  # document frequencies at ``_df_version``
        self._df_version = -1
        #: Postings the last search scored in full (a bounded search skips some).
        self.scored = 0
        self._buffer = np.zeros(0, dtype=np.float64)
        self._seen = np.zeros(0, dtype=bool)
        self._where = np.zeros(0, dtype=np.int32)
        self._norm = np.zeros(0, dtype=np.float64)
        self._norm_key: tuple[int, int, int] | None = None
        self._version = 0  # bumped by every change of documents or their numbering

    # --- size -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._doc)

    def holds(self, memory_id: str) -> bool:
        return memory_id in self._doc

    def statistics(self) -> tuple[int, int]:
        """(live documents, their tokens in every column): BM25's N and avgdl's numerator."""
        return len(self._doc), self._tokens

    def nbytes(self) -> int:
        """An estimate of the memory it takes (arrays exactly; Python objects by size)."""
        arrays = (self._length.nbytes + self._alive.nbytes + self._keys.nbytes + self._offsets.nbytes
                  + self._docs.nbytes + self._own.nbytes + self._ctx.nbytes + self._by_impact.nbytes
                  + self._impact_key.nbytes + 3 * self._group_start.nbytes)
        return arrays + 200 * len(self._ids) + 170 * len(self._vocab) + 120 * self._tail_size

    # --- writes -----------------------------------------------------------------------

    def add(self, rows: Iterable[tuple[str, Any, Any]]) -> None:
        """Index memories given as (id hex, content, context text or None), replacing any
        held under the same id. The context is cut to ``CONTEXT_CHARS`` characters.
        Blind tokens come as lists of tokens instead (``_counts``)."""
        for memory_id, content, context in rows:
            self.remove([memory_id])
            own, ctx = _counts(content, context)
            doc = len(self._ids)
            self._version += 1
            self._grow(doc + 1)
            self._ids.append(memory_id)
            self._doc[memory_id] = doc
            length = own.total() + ctx.total()
            self._length[doc] = length
            self._keys[doc] = memory_id.encode()
            self._alive[doc] = True
            self._tokens += length
            for term in own.keys() | ctx.keys():
                o, c = own.get(term, 0), ctx.get(term, 0)
                self._tail.setdefault(term, []).append((doc, o, c))
                self._tail_size += 1
                bound = self._tail_bounds.get(term)
                if bound is None:
                    self._tail_bounds[term] = [o, c, length]
                else:
                    bound[0], bound[1], bound[2] = max(bound[0], o), max(bound[1], c), min(bound[2], length)

    def load(self, rows: Iterable[tuple[str, Any, Any]]) -> None:
        """Fill an empty index (a build from SQL): postings counted with numpy a chunk of
        rows at a time (``_chunk``) and laid out as CSR, never as per-posting Python
        objects (their peak was several times the index's size)."""
        assert not self._ids, "load() fills an empty index"
        from apps.memories.lexical import CONTEXT_CHARS

        vocab: dict[str, int] = {}
        word_ids: dict[bytes, int] = {b"\0": -1}
        parts: list[tuple[np.ndarray, ...]] = []
        texts: list[str] = []
        blind: list[str] = []
        runs, size, first = array("q"), 0, 0
        for memory_id, content, context in rows:
            if memory_id in self._doc:
                continue
            self._doc[memory_id] = len(self._ids)
            self._ids.append(memory_id)
            if isinstance(content, list):  # blind tokens (_counts)
                context = context or ()
                runs.extend((len(texts), len(content), len(texts) + 1, len(context)))
                blind += [*content, *context]
                texts += ("", "")
                size += len(content) + len(context)
            else:
                texts += (content, context[:CONTEXT_CHARS] if context else "")
                size += len(content) + len(texts[-1])
            if size > _LOAD_CHARS:
                parts.append(_chunk(texts, blind, runs, vocab, word_ids, first))
                first += len(texts) // 2
                texts, blind, runs, size = [], [], array("q"), 0
        if texts or not parts:
            parts.append(_chunk(texts, blind, runs, vocab, word_ids, first))
        tid, docs, own, ctx, self._length = (np.concatenate(c) for c in zip(*parts, strict=True))
        if len(parts) > 1:  # chunks' documents ascend: a stable sort by term keeps them so
            del parts
            order = np.argsort(tid, kind="stable")
            tid, docs, own, ctx = tid[order], docs[order], own[order], ctx[order]
        self._docs, self._own, self._ctx = docs, own, ctx
        counts = np.bincount(tid, minlength=len(vocab))
        self._vocab = vocab
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._tokens = int(self._length.sum())
        self._alive = np.ones(len(self._ids), dtype=bool)
        self._keys = np.array([memory_id.encode() for memory_id in self._ids], dtype="S32")
        self._grow(len(self._ids) + 1)
        self._csr_bounds()
        self._version += 1

    def remove(self, memory_ids: Iterable[str]) -> None:
        """Drop these memories (tombstones until the next compaction)."""
        for memory_id in memory_ids:
            doc = self._doc.pop(memory_id, None)
            if doc is not None:
                self._version += 1
                self._alive[doc] = False
                self._tokens -= int(self._length[doc])
                self._dead += 1

    def _grow(self, size: int) -> None:
        if size > len(self._length):
            capacity = max(size, 2 * len(self._length))
            self._length = np.resize(self._length, capacity)
            self._keys = np.resize(self._keys, capacity)
            self._alive = np.concatenate([self._alive, np.zeros(capacity - len(self._alive), bool)])

    def maybe_compact(self) -> None:
        held = len(self._docs)
        if (self._tail_size > max(_COMPACT_MIN, COMPACT_SHARE * held)
                or self._dead > max(_COMPACT_MIN // 5, COMPACT_SHARE * len(self._ids))):
            self.compact()

    def compact(self) -> None:
        """Merge the tail into the CSR arrays and drop dead documents (renumbering the rest)."""
        terms = list(self._vocab)
        new_terms = [t for t in self._tail if t not in self._vocab]
        vocab = {**self._vocab, **{t: len(terms) + i for i, t in enumerate(new_terms)}}
        terms += new_terms
        tail = [(vocab[t], d, o, c) for t, postings in self._tail.items() for d, o, c in postings]
        flat = np.array(tail, dtype=np.int64).reshape(-1, 4)
        tid = np.concatenate([np.repeat(np.arange(len(self._vocab)), np.diff(self._offsets)),
                              flat[:, 0]]).astype(np.int64)
        docs = np.concatenate([self._docs, flat[:, 1].astype(np.int32)])
        own = np.concatenate([self._own, flat[:, 2].astype(np.int32)])
        ctx = np.concatenate([self._ctx, flat[:, 3].astype(np.int32)])
        size = len(self._ids)
        alive = self._alive[:size]
        keep = alive[docs]
        tid, docs, own, ctx = tid[keep], docs[keep], own[keep], ctx[keep]
        renumber = (np.cumsum(alive) - 1).astype(np.int32)
        docs = renumber[docs]
        order = np.argsort(tid, kind="stable")
        tid, docs, own, ctx = tid[order], docs[order], own[order], ctx[order]
        counts = np.bincount(tid, minlength=len(terms))
        used = np.flatnonzero(counts)
        self._vocab = {terms[t]: i for i, t in enumerate(used.tolist())}
        self._offsets = np.concatenate([[0], np.cumsum(counts[used])]).astype(np.int64)
        self._docs, self._own, self._ctx = docs, own, ctx
        live = np.flatnonzero(alive)
        self._ids = [self._ids[i] for i in live.tolist()]
        self._doc = {memory_id: i for i, memory_id in enumerate(self._ids)}
        self._length = self._length[live].copy()
        self._keys = self._keys[live].copy()
        self._alive = np.ones(len(self._ids), dtype=bool)
        self._grow(len(self._ids) + 1)
        self._tail, self._tail_size, self._dead = {}, 0, 0
        self._tail_bounds = {}
        self._csr_bounds()
        self._version += 1

    def _csr_bounds(self) -> None:
        """Per term of the CSR arrays: its bounds (:meth:`bounds`); the impact order is
        laid out again at its next use."""
        starts = self._offsets[:-1]
        self._impact_ready = False
        self._by_impact = self._group_start = self._group_own = self._group_ctx = _EMPTY
        self._impact_key = np.zeros(0, dtype=np.int64)
        if not len(self._docs) or not len(starts):
            self._own_max = self._ctx_max = self._len_min = _EMPTY
            return
        self._own_max = np.maximum.reduceat(self._own, starts)
        self._ctx_max = np.maximum.reduceat(self._ctx, starts)
        self._len_min = np.minimum.reduceat(self._length[self._docs], starts)

    def _impact_layout(self) -> None:
        """The CSR postings again in impact order, for keyword_topk.py (built at its first
        use after a build or compaction: 16 bytes a posting, ~0.5 s a million): grouped
        by (own, context) occurrences, most first, each group by document length,
        shortest first (``_groups``: per term a range of groups, each a start in
        ``_by_impact`` / ``_impact_key`` and its own and context occurrences)."""
        self._impact_ready = True
        starts = self._offsets[:-1]
        if not len(self._docs) or not len(starts):
            self._groups = np.zeros(len(self._offsets), dtype=np.int64)
            return
        length = self._length[self._docs]
        tid = np.repeat(np.arange(len(starts)), np.diff(self._offsets))
        order = np.lexsort((length, -self._ctx, -self._own, tid))
        own, ctx = self._own[order], self._ctx[order]
        self._by_impact = self._docs[order]
        change = (np.diff(tid) != 0) | (np.diff(own) != 0) | (np.diff(ctx) != 0)
        self._group_start = np.concatenate([[0], np.flatnonzero(change) + 1]).astype(np.int64)
        self._group_own, self._group_ctx = own[self._group_start], ctx[self._group_start]
        self._groups = np.searchsorted(self._group_start, self._offsets)
        sizes = np.diff(np.append(self._group_start, len(order)))
        group = np.repeat(np.arange(len(self._group_start)), sizes)
        # (group, document length), sorted: keyword_topk's cuts
        self._impact_key = group * 2**31 + length[order]

    def impact_groups(self, term: str) -> tuple[int, int, int, int, int]:
        """(first group, end group, CSR start, CSR end, term id) of the term, or zeros
        and -1 when the CSR arrays do not hold it."""
        if not self._impact_ready:
            self._impact_layout()
        tid = self._vocab.get(term)
        if tid is None:
            return 0, 0, 0, 0, -1
        return (int(self._groups[tid]), int(self._groups[tid + 1]), int(self._offsets[tid]),
                int(self._offsets[tid + 1]), tid)

    def lengths(self, size: int) -> np.ndarray:
        """The distinct lengths of documents held (dead ones too), sorted; kept until
        the documents change."""
        if self._lengths_key != self._version:
            self._distinct_lengths = np.unique(self._length[:size])
            self._lengths_key = self._version
        return self._distinct_lengths

    # --- reads ------------------------------------------------------------------------

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The term's (documents, own occurrences, context occurrences), dead ones included."""
        tid = self._vocab.get(term)
        parts = []
        if tid is not None:
            start, end = self._offsets[tid], self._offsets[tid + 1]
            parts.append((self._docs[start:end], self._own[start:end], self._ctx[start:end]))
        tail = self._tail.get(term)
        if tail:
            flat = np.array(tail, dtype=np.int32).reshape(-1, 3)
            parts.append((flat[:, 0], flat[:, 1], flat[:, 2]))
        if not parts:
            return _EMPTY, _EMPTY, _EMPTY
        if len(parts) == 1:
            return parts[0]
        return tuple(np.concatenate(column) for column in zip(*parts, strict=True))  # type: ignore[return-value]

    def document_frequency(self, term: str, weight: float = 1.0) -> int:
        docs, own, _ = self.postings(term)
        if weight <= 0:
            docs = docs[own > 0]
        return int(np.count_nonzero(self._alive[docs])) if self._dead else len(docs)

    def frequency(self, term: str, docs: np.ndarray, own: np.ndarray, weight: float) -> int:
        """:meth:`document_frequency` from the term's postings, kept until the documents change."""
        if weight > 0 and not self._dead:
            return len(docs)
        if self._df_version != self._version:
            self._df, self._df_version = {}, self._version
        key = (term, weight > 0)
        found = self._df.get(key)
        if found is None:
            if weight <= 0:
                docs = docs[own > 0]
            found = self._df[key] = int(np.count_nonzero(self._alive[docs])) if self._dead else len(docs)
        return found

    def bounds(self, term: str) -> tuple[int, int, int]:
        """The term's most own and context occurrences in a posting and its shortest
        document (over all its postings, dead ones included: bounds, not exact)."""
        own = ctx = 0
        length = 2**31 - 1
        tid = self._vocab.get(term)
        if tid is not None:
            own, ctx, length = int(self._own_max[tid]), int(self._ctx_max[tid]), int(self._len_min[tid])
        tail = self._tail_bounds.get(term)
        if tail is not None:
            own, ctx, length = max(own, tail[0]), max(ctx, tail[1]), min(length, tail[2])
        return own, ctx, length

    def search(self, terms: Sequence[str], weight: float, limit: int,
               allowed: np.ndarray | None = None, exhaustive: bool = False) -> list[tuple[str, float]]:
        """The best ``limit`` (memory id hex, score) for these index terms, score
        descending then id; ``allowed`` (a mask over documents) narrows them. The common
        terms' postings are scored only where they can change the top (keyword_topk.py)
        unless ``exhaustive``: the same results either way."""
        rows = len(self._doc)
        if not rows or not terms or limit <= 0:
            return []
        size = len(self._ids)
        if len(self._buffer) < size:  # kept zeroed between searches: no fresh pages each time
            self._buffer = np.zeros(max(size, 2 * len(self._buffer)), dtype=np.float64)
        try:
            bounded = None if exhaustive else top_k(self, terms, weight, limit, allowed, rows, size)
            if bounded is None:
                found, values = self._accumulate(self._buffer, terms, weight, rows, size)
                if allowed is not None:
                    keep = allowed[found]
                    found, values = found[keep], values[keep]
            else:
                found, values = bounded
        except BaseException:
            self._buffer = np.zeros(0, dtype=np.float64)  # never leave them dirty
            self._seen = np.zeros(0, dtype=bool)
            self._where = np.zeros(0, dtype=np.int32)
            raise
        return self._best(found, values, limit)

    def _best(self, found: np.ndarray, values: np.ndarray, limit: int) -> list[tuple[str, float]]:
        """The best ``limit`` of these documents and scores: score descending, then id."""
        if len(found) > limit:
            kth = np.partition(values, len(values) - limit)[len(values) - limit]
            above = values > kth
            tied = found[values == kth]
            # of the documents tied at the edge, those with the smallest ids (the SQL order)
            tied = tied[np.argsort(self._keys[tied], kind="stable")[:limit - int(above.sum())]]
            values = np.concatenate([values[above], np.full(len(tied), kth)])
            found = np.concatenate([found[above], tied])
        ranked = sorted(zip(found.tolist(), values.tolist(), strict=True),
                        key=lambda item: (-item[1], self._ids[item[0]]))[:limit]
        return [(self._ids[doc], score) for doc, score in ranked]

    def seen(self, size: int) -> np.ndarray:
        """A scratch mask over documents, all False (left so by its users)."""
        if len(self._seen) < size:
            self._seen = np.zeros(max(size, len(self._buffer)), dtype=bool)
        return self._seen

    def where(self, size: int) -> np.ndarray:
        """A scratch int32 array over documents, all 0 (left so by its users)."""
        if len(self._where) < size:
            self._where = np.zeros(max(size, len(self._buffer)), dtype=np.int32)
        return self._where

    def _norms(self, rows: int, size: int) -> np.ndarray:
        """Per document ``k1 * (1 - b + b * D / avgdl)`` (FTS5's expression, same float
        operations), kept until the documents change."""
        key = (self._version, rows, size)
        if self._norm_key != key:
            length = self._length[:size].astype(np.float64)
            self._norm = K1 * (1 - B + B * length / ((self._tokens or rows) / rows))  # no token: unused
            self._norm_key = key
        return self._norm

    def _accumulate(self, scores: np.ndarray, terms: Sequence[str], weight: float, rows: int,
                    size: int) -> tuple[np.ndarray, np.ndarray]:
        """Add each term's BM25 contribution into ``scores`` (in the query's order, as FTS5
        sums them); return the matched documents and their scores, ``scores`` zeroed again."""
        norm = self._norms(rows, size)
        touched, postings = [], 0
        for term in terms:
            docs, own, ctx = self.postings(term)
            if weight > 0:
                freq = own + weight * ctx
            else:
                matched = own > 0
                docs, freq = docs[matched], own[matched].astype(np.float64)
            if self._dead:
                live = self._alive[docs]
                docs, freq = docs[live], freq[live]
            if not len(docs):
                continue
            df = len(docs)
            idf = math.log((rows - df + 0.5) / (df + 0.5))
            if idf <= 0.0:
                idf = 1e-6
            scores[docs] += idf * ((freq * (K1 + 1.0)) / (freq + norm[docs]))
            touched.append(docs)
            postings += len(docs)
        self.scored = postings
        if not touched:
            return _EMPTY, np.zeros(0)
        if len(touched) == 1:
            found = touched[0]
        elif postings > size // 8:  # a scan of a (warm) byte mask beats sorting that many
            if len(self._seen) < size:
                self._seen = np.zeros(len(scores), dtype=bool)
            for docs in touched:
                self._seen[docs] = True
            found = np.flatnonzero(self._seen[:size])
            self._seen[found] = False
        else:
            found = np.unique(np.concatenate(touched))
        values = scores[found]
        scores[found] = 0.0
        return found, values

    def mask(self, memory_ids: Iterable[str]) -> np.ndarray:
        """A mask over documents: these memories' (the ones held)."""
        allowed = np.zeros(len(self._ids), dtype=bool)
        docs = [d for memory_id in memory_ids if (d := self._doc.get(memory_id)) is not None]
        allowed[docs] = True
        return allowed
