"""Document frequencies of query terms per namespace, remembered for as long as the
namespace's memory count is (``lexical._total_rows``: at most a minute).

Why: common-term pruning (``lexical.prune_common``) asks FTS5's vocabulary table how
many memories hold each query term, and fts5vocab answers by walking the term's whole
posting list. That cost sits on every keyword recall, outside the keyword search itself,
and grows with the namespace like the search did. A term's share of a namespace moves
slowly, and pruning only compares it with a threshold (``MEMORYWEB_LEXICAL_MAX_DF``),
so a count as old as the total it is compared with is as good as a fresh one.

What keeps it honest:

* Counts are per namespace (another tenant's never answer), and only for the epoch of
  the namespace's total (the ``time.monotonic()`` it was counted at): when the total is
  counted again, every count of the namespace is asked again.
* A removal or edit of memories in this process (delete, erasure, the namespace's
  tables dropped or rebuilt) forgets the namespace's counts at once and again at commit;
  other processes within the minute, as for the total.
* At most ``MAX_HELD`` counts in the process; past it all are forgotten (a miss costs
  only the query it saves).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from django.db import transaction

#: Most counts held in this process (all namespaces); past it the cache starts over.
MAX_HELD = 100_000

_counts: dict[int, tuple[float, dict[str, int]]] = {}
_held = 0
_lock = threading.Lock()  # keeps _held the number of counts held


def known(namespace_id: int, epoch: float | None, terms: Iterable[str]) -> dict[str, int]:
    """The remembered counts of ``terms`` (those known) for this epoch of the namespace."""
    entry = _counts.get(namespace_id)
    if entry is None or epoch is None or entry[0] != epoch:
        return {}
    counts = entry[1]
    return {term: counts[term] for term in terms if term in counts}


def keep(namespace_id: int, epoch: float | None, counts: Mapping[str, int]) -> None:
    """Remember these counts, read from the namespace's vocabulary in this epoch."""
    global _held
    if epoch is None or not counts:
        return
    with _lock:
        entry = _counts.get(namespace_id)
        if entry is None or entry[0] != epoch:
            if entry is not None:
                _held -= len(entry[1])
            entry = _counts[namespace_id] = (epoch, {})
        if _held + len(counts) > MAX_HELD:
            _counts.clear()
            _held = 0
            entry = _counts[namespace_id] = (epoch, {})
        before = len(entry[1])
        entry[1].update(counts)
        _held += len(entry[1]) - before


def forget(namespace_id: int) -> None:
    """Drop the namespace's counts (memories were removed or edited: a count may include
    them) now, and again when the transaction commits: a recall in between reads the
    counts as they were before the change and may remember them."""
    _drop(namespace_id)
    transaction.on_commit(lambda: _drop(namespace_id))


def _drop(namespace_id: int) -> None:
    global _held
    with _lock:
        entry = _counts.pop(namespace_id, None)
        if entry is not None:
            _held -= len(entry[1])


def clear() -> None:
    global _held
    with _lock:
        _counts.clear()
        _held = 0
