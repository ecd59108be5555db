"""FTS5's tokenizer in Python, and a build's bulk counting of postings (keyword_index.py).

``tokens`` makes of a text the terms FTS5's ``porter unicode61 remove_diacritics 2``
makes (lower case, diacritics removed, runs of letters and digits, Porter stems of 3..64
bytes); ``_chunk`` counts a batch of rows' postings with numpy for
``NamespaceIndex.load``. Apart from keyword_index.py so each stays a readable size.
"""

from __future__ import annotations

import re
import unicodedata
from array import array
from collections.abc import Sequence

import numpy as np

_EMPTY = np.zeros(0, dtype=np.int32)
#: FTS5's porter tokenizer stems tokens of 3..64 bytes only.
_STEM_MIN_BYTES, _STEM_MAX_BYTES = 3, 64
#: unicode61 token characters (letters and digits); everything else separates.
_TOKEN = re.compile(r"[^\W_]+")
#: load()'s split of folded texts: letters and digits kept (ASCII ones, every byte of
#: UTF-8's others), NUL kept (it separates texts), any other ASCII byte made a space.
_WORD_BYTES = bytes(b if b >= 0x80 or b == 0 or chr(b).isalnum() else 0x20 for b in range(256))

_stems: dict[str, str] = {}
_STEM_CACHE_MAX = 500_000


def _stemmed(word: str) -> str:
    """The Porter stem as FTS5's porter tokenizer makes it (cached: words repeat)."""
    found = _stems.get(word)
    if found is None:
        from apps.memories.lexical import _stem  # lexical imports this module's users

        size = len(word) if word.isascii() else len(word.encode())
        found = word if size < _STEM_MIN_BYTES or size > _STEM_MAX_BYTES else _stem(word)
        if len(_stems) >= _STEM_CACHE_MAX:
            _stems.clear()
        _stems[word] = found
    return found


def _fold(text: str) -> str:
    text = text.lower()
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def tokens(text: str) -> list[str]:
    """The terms FTS5's ``porter unicode61 remove_diacritics 2`` makes of ``text``."""
    return [_stemmed(word) for word in _TOKEN.findall(_fold(text))]


def query_terms(terms: Sequence[str]) -> list[str] | None:
    """Each query term (a quoted FTS5 phrase) as the one index term it is, in order; None
    when one is a phrase of several tokens (``foo_bar``), which only the SQL engine
    matches (it needs positions); a term of no token matches nothing and is left out."""
    found = []
    for term in terms:
        parts = tokens(term)
        if len(parts) > 1:
            return None
        found.extend(parts)
    return found


def _spaced(text: str) -> str:
    """``text`` folded as tokens() folds it, reduced to its words (as tokens() finds them)
    joined by spaces when not ASCII: load()'s bytes split then finds the same words."""
    text = _fold(text)
    return text.replace("\0", " ") if text.isascii() else " ".join(_TOKEN.findall(text))


def _chunk(texts: list[str], blind: list[str], runs: array, vocab: dict[str, int],
           word_ids: dict[bytes, int], first: int) -> tuple[np.ndarray, ...]:
    """load()'s postings of a chunk of rows, the first document ``first``: (term ids,
    documents, own and context occurrences) sorted by term then document; the rows' lengths.
    ``texts``: two a row (own words, context cut), ``blind``: blind rows' tokens, in runs
    of (text's position, tokens) pairs. Each distinct text is split once (a context is
    often another row's words), each distinct word stemmed once; occurrences are counted
    with numpy: no Counter per row."""
    if not texts:
        return (_EMPTY,) * 5
    unique: dict[str, int] = {}
    which = np.array([unique.setdefault(text, len(unique)) for text in texts], dtype=np.int64)
    words = " \0 ".join(map(_spaced, unique)).encode().translate(_WORD_BYTES).split()
    for word in set(words).difference(word_ids):
        word_ids[word] = vocab.setdefault(_stemmed(word.decode()), len(vocab))
    tid = np.fromiter(map(word_ids.__getitem__, words), dtype=np.int64, count=len(words))
    cut = tid < 0  # the NULs between texts (word_ids[b"\0"] is -1)
    tid = tid[~cut]
    bounds = np.concatenate([[0], np.flatnonzero(cut) - np.arange(len(unique) - 1), [len(tid)]])
    starts, sizes = bounds[which], np.diff(bounds)[which]
    tid = tid[np.arange(sizes.sum()) + np.repeat(starts - np.cumsum(sizes) + sizes, sizes)]
    code = np.repeat(np.arange(len(texts)), sizes)
    if blind:
        vocab.update({term: len(vocab) + i for i, term in enumerate(set(blind).difference(vocab))})
        tid = np.concatenate([tid, np.fromiter(map(vocab.__getitem__, blind), np.int64, len(blind))])
        code = np.concatenate([code, np.repeat(runs[0::2], runs[1::2])])
    rows = len(texts) // 2
    lengths = np.bincount(code, minlength=2 * rows).reshape(rows, 2).sum(axis=1)
    # by term, then row: stably (rows ascend, unless blind ones are among text ones), by a
    # radix sort when term ids fit 16 bits
    order = (np.lexsort((code, tid)) if blind else
             np.argsort(tid.astype(np.uint16) if len(vocab) <= 1 << 16 else tid, kind="stable"))
    key = (tid * (2 * rows) + code)[order]  # term * 2 rows + 2 row + column, ascending
    pair = key >> 1
    starts = np.flatnonzero(np.diff(pair, prepend=-1))  # a (term, row)'s first; none if no token
    ctx = np.add.reduceat(key & 1, starts)
    own, pair = np.diff(np.append(starts, len(key))) - ctx, pair[starts]
    return ((pair // rows).astype(np.int32), (pair % rows + first).astype(np.int32),
            own.astype(np.int32), ctx.astype(np.int32), lengths.astype(np.int32))
