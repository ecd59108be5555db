"""The in-memory keyword engine: each process's indexes, kept in step with SQL by a log.

With ``MEMORYWEB_KEYWORD_ENGINE = "memory"`` lexical.search ranks from a per-namespace
:class:`~apps.memories.keyword_index.NamespaceIndex` held by this process; SQL stays
the truth (and the FTS5 tables / tsvector columns are still written, so the setting can
be switched back at any restart). On SQLite a small namespace, which has no FTS5 table
(small_keywords.py), is ranked from one whatever the engine, and its writes are logged.

**Consistency across processes** (several server processes, commands, one database):
``lexical.add/remove/replace`` write a :class:`~apps.memories.models.KeywordChange`
row per memory in the write's own transaction (ids and operations, never text). Each
process's index remembers the last sequence number it applied. A search first reads
the namespace's ``max(id)`` (one indexed query); if it is newer, the rows after the one
applied are read and each named memory is re-read from memories_memory: present, it is
indexed as it is now; gone, it is dropped. Applying a change is idempotent and needs no
order, so read-your-writes holds in every process. On PostgreSQL, where sequence numbers
are taken before commit, the writer takes a per-namespace transaction advisory lock
before its first log row, so a namespace's rows commit in sequence order and a reader
that sees number n has every row below it (SQLite serialises writers anyway).

**Pruning**: at most once a minute per writing process (after its commit), rows older
than ``MEMORYWEB_KEYWORD_LOG_MINUTES`` are deleted, except each namespace's newest (so
``max(id)`` unchanged still means "nothing new"). A process that has new rows to apply
but last synced the namespace before that horizon (less a minute for clock skew) may
have lost some: it rebuilds the namespace from SQL instead. ``reindex`` logs a
``rebuild`` row: every process rebuilds that namespace at its next search.

**Memory bound**: an LRU over namespaces, ``MEMORYWEB_KEYWORD_MEMORY_MB`` per process
(estimated from the arrays and Python objects held); the least recently searched
namespaces are evicted, and rebuilt from SQL at their next search. The namespace being
searched is never evicted, even when it alone is larger than the budget. One unused for
longer than the log is kept is let go too (``_evict``).
"""

from __future__ import annotations

import datetime
import logging
import os
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from apps.core import background
from apps.memories import blind_tokens
from apps.memories.keyword_index import NamespaceIndex, query_terms

#: Ids per statement.
_CHUNK = 500
#: Skew allowed between processes' clocks when deciding a process fell behind the log.
SKEW_SECONDS = 60.0
PRUNE_EVERY_SECONDS = 60.0
#: With filters, the top this many (at least) are checked against them first.
_FILTER_PROBE = 200
_ADVISORY_CLASS = 0x4B57  # "KW": the advisory lock namespace of these locks (PostgreSQL)
#: ``auto``: a request catches an index up with at most this many log rows; more (a bulk
#: ingest since its last search) are applied by the warming thread, the table answering
#: meanwhile. Past this many, and a quarter of the index, a catch-up is a build.
INLINE_CHANGES = 1000

logger = logging.getLogger(__name__)


def enabled() -> bool:
    """The in-memory engine ranks OR queries and every write is logged: ``memory``, or
    ``auto`` (the default) on SQLite, where the index's scores are FTS5's own to the last
    bit. On PostgreSQL ``auto`` is ``sql``: ``ts_rank_cd`` is not BM25, and a namespace's
    scores must not change scale when its index is built."""
    engine = settings.MEMORYWEB_KEYWORD_ENGINE
    return engine == "memory" or (engine == "auto" and connection.vendor == "sqlite")


def builds_inline() -> bool:
    """Whether a search builds a namespace's missing index on the request path
    (``memory``). With ``auto`` the table answers meanwhile and the index is built on
    this process's warming thread (:meth:`Indexes.warm`): a 100,000-memory namespace's
    build takes seconds, its FTS5 query tens of milliseconds."""
    return settings.MEMORYWEB_KEYWORD_ENGINE == "memory"


def _hex(value) -> str:
    return value.hex if isinstance(value, uuid.UUID) else uuid.UUID(str(value)).hex


# --- the log (written by lexical.py in the write's transaction) -------------------------

_last_prune = 0.0


def log(namespace_id: int, memory_ids: Sequence, op: str) -> None:
    """Record that these memories' keyword entries changed (``op``: add, remove or
    rebuild; ``memory_ids`` empty for rebuild). Call inside the write's transaction."""
    from apps.memories.models import KeywordChange

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_ADVISORY_CLASS, int(namespace_id)])
    ids = list(memory_ids) if op != KeywordChange.Op.REBUILD else [None]
    KeywordChange.objects.bulk_create(
        [KeywordChange(namespace_id=namespace_id, memory_id=pk, op=op) for pk in ids], batch_size=_CHUNK)
    global _last_prune
    if time.monotonic() - _last_prune > PRUNE_EVERY_SECONDS:
        _last_prune = time.monotonic()
        transaction.on_commit(prune)


def prune(now: datetime.datetime | None = None) -> int:
    """Delete log rows older than the retention, each namespace's newest excepted."""
    from apps.memories.models import KeywordChange

    moment = timezone.now() if now is None else now
    cutoff = moment - datetime.timedelta(minutes=settings.MEMORYWEB_KEYWORD_LOG_MINUTES)
    newest = KeywordChange.objects.values("namespace_id").annotate(newest=Max("id")).values("newest")
    return KeywordChange.objects.filter(created_at__lt=cutoff).exclude(id__in=newest).delete()[0]


def _latest(namespace_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(id) FROM memories_keywordchange WHERE namespace_id = %s",
                       [namespace_id])
        return cursor.fetchone()[0] or 0


def _behind(namespace_id: int, after: int) -> int:
    """How many of the namespace's log rows follow ``after``, counted to at most
    ``INLINE_CHANGES + 1`` (a range of the (namespace, id) index)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM (SELECT 1 FROM memories_keywordchange WHERE "
                       "namespace_id = %s AND id > %s LIMIT %s) AS behind",
                       [namespace_id, after, INLINE_CHANGES + 1])
        return cursor.fetchone()[0]


def _changes(namespace_id: int, after: int) -> list[tuple[int, str | None, str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, memory_id, op FROM memories_keywordchange "
                       "WHERE namespace_id = %s AND id > %s ORDER BY id", [namespace_id, after])
        return cursor.fetchall()


def _texts(namespace_id: int, memory_ids: Sequence[str] | None) -> Iterable[tuple[str, Any, Any]]:
    """(id hex, content, context content) of these memories of the namespace as SQL has
    them now (every memory of it for None). An encrypted namespace's come as lists of
    blind tokens (blind_tokens.py: read through the ORM, which opens the sealed text)."""
    from apps.memories.models import Memory

    if blind_tokens.encrypted(namespace_id):
        blinder = blind_tokens.for_namespace(namespace_id)
        for pk, content, context, _ in blind_tokens.plaintexts(namespace_id, memory_ids):
            yield pk, blinder.terms(content), blinder.terms(blind_tokens.context_cut(context))
        return
    rows = Memory.objects.filter(namespace_id=namespace_id)
    fields = ("pk", "content", "context_memory__content")
    if memory_ids is None and connection.vendor == "sqlite":
        # A build, on the request path of a small namespace's first search in a process
        # (small_keywords.py): one raw statement (the ORM's UUID and text converters cost
        # more than the read: 1.3 ms for 100 rows). The columns as lexical.py copies them
        # into an FTS5 table; a plain namespace's text is stored as it is (sealed only
        # when encrypted, above). PostgreSQL streams through the ORM's server-side cursor.
        with connection.cursor() as cursor:
            cursor.execute("SELECT m.id, m.content, c.content FROM memories_memory m "
                           "LEFT JOIN memories_memory c ON c.id = m.context_memory_id "
                           "WHERE m.namespace_id = %s", [namespace_id])
            while chunk := cursor.fetchmany(2000):
                for pk, content, context in chunk:
                    yield _hex(pk), content, context
        return
    if memory_ids is None:
        for pk, content, context in rows.values_list(*fields).iterator(chunk_size=2000):
            yield _hex(pk), content, context
        return
    for start in range(0, len(memory_ids), _CHUNK):
        part = [uuid.UUID(i) for i in memory_ids[start:start + _CHUNK]]
        for pk, content, context in Memory.objects.in_namespace_checked(namespace_id).filter(
                pk__in=part).values_list(*fields):
            yield _hex(pk), content, context


# --- one process's indexes --------------------------------------------------------------

class Indexes:
    """This process's namespace indexes: synced with the log before each use, an LRU
    bounded by ``budget`` bytes (``MEMORYWEB_KEYWORD_MEMORY_MB`` when None)."""

    def __init__(self, budget: int | None = None) -> None:
        self._budget = budget
        self._lock = threading.Lock()
        self._held: OrderedDict[int, NamespaceIndex] = OrderedDict()
        #: Each held index's estimated size when last synced, and their sum.
        self._sizes: dict[int, int] = {}
        self._total = 0
        #: Builds from SQL (tests and ``stats`` read it).
        self.builds = 0
        #: ``auto``: namespaces queued or being built on the warming thread, and those whose
        #: index alone outgrew the budget (their table answers in this process).
        self._building: set[int] = set()
        self._too_large: set[int] = set()
        self._queue: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._warming_pid: int | None = None

    def budget(self) -> int:
        if self._budget is not None:
            return self._budget
        return int(settings.MEMORYWEB_KEYWORD_MEMORY_MB * 1024 * 1024)

    def loaded(self) -> list[int]:
        with self._lock:
            return list(self._held)

    def clear(self) -> None:
        with self._lock:
            self._held.clear()
            self._sizes.clear()
            self._total = 0
            self.builds = 0
            self._too_large.clear()

    def drop(self, namespace_id: int) -> None:
        with self._lock:
            self._held.pop(namespace_id, None)
            self._total -= self._sizes.pop(namespace_id, 0)

    def _entry(self, namespace_id: int) -> NamespaceIndex:
        with self._lock:
            index = self._held.get(namespace_id)
            if index is None:
                index = self._held[namespace_id] = NamespaceIndex(namespace_id)
            self._held.move_to_end(namespace_id)
            return index

    def synced(self, namespace_id: int) -> NamespaceIndex:
        """The namespace's index, in step with the log (built or caught up as needed).
        The caller holds ``index.lock`` while it uses it."""
        index, size = self._caught_up(namespace_id)
        self._evict(namespace_id, size)
        return index

    def _caught_up(self, namespace_id: int) -> tuple[NamespaceIndex, int]:
        """The namespace's index built or caught up with the log, and its size."""
        index = self._entry(namespace_id)
        with index.lock:
            self._sync(index)
            return index, index.nbytes()

    def _sync(self, index: NamespaceIndex, build: bool = True) -> bool:
        """Catch the index up with the log. Inside a transaction (which may still roll
        back) what it applies is provisional: the log position does not advance, the ids
        are re-read at the next sync, and a build made there is made again outside.
        Whether it is in step: False only when it needs a build and ``build`` is False,
        or (then too) when it is more than :data:`INLINE_CHANGES` log rows behind: after a
        bulk ingest the catch-up is left to the warming thread, not a request."""
        now = time.time()
        inside = connection.in_atomic_block
        latest = _latest(index.namespace_id)
        if (index.synced_at and latest == index.applied and not index.pending
                and not (index.provisional and not inside)):
            index.synced_at = now
            return True
        horizon = now - settings.MEMORYWEB_KEYWORD_LOG_MINUTES * 60 + SKEW_SECONDS
        if (not index.synced_at or latest < index.applied or index.synced_at < horizon
                or (index.provisional and not inside)):
            if build:
                self._build(index, latest, now, provisional=inside)
            return build
        if (not build and latest - index.applied > INLINE_CHANGES  # ids are shared by every
                and _behind(index.namespace_id, index.applied) > INLINE_CHANGES):  # namespace
            return False
        rows = _changes(index.namespace_id, index.applied)
        if (any(op == "rebuild" for _, _, op in rows)
                or len(rows) > max(INLINE_CHANGES, len(index) // 4)):  # a build is the faster
            if build:
                self._build(index, max(latest, rows[-1][0]), now, provisional=inside)
            return build
        changed = list(dict.fromkeys([*index.pending,
                                      *(_hex(pk) for _, pk, _ in rows if pk is not None)]))
        found = list(_texts(index.namespace_id, changed))
        index.remove(changed)
        index.add(found)
        index.maybe_compact()
        if inside:
            index.pending = set(changed)
        else:
            index.pending = set()
            index.applied = max([index.applied, latest, *(seq for seq, _, _ in rows)])
        index.synced_at = now
        return True

    def _build(self, index: NamespaceIndex, latest: int, now: float, provisional: bool) -> None:
        """Replace the index's contents with the namespace as SQL holds it (the log's
        number read first: later changes are applied again, harmlessly)."""
        fresh = NamespaceIndex(index.namespace_id)
        fresh.load(_texts(index.namespace_id, None))
        index.__dict__.update({k: v for k, v in fresh.__dict__.items() if k != "lock"})
        index.applied, index.synced_at, index.provisional = latest, now, provisional
        self.builds += 1

    def _evict(self, keep: int, size: int) -> None:
        """Note ``keep``'s size, then evict the least recently used others while the
        total is over the budget, and those unused for longer than the log is kept
        (amortised O(1) per search, however many namespaces are held).

        Idle ones go because nothing else would let go of them: a namespace deleted, or
        grown past ``MEMORYWEB_SMALL_KEYWORD_LIMIT`` by another process (its table answers
        from then on), is never searched here again, and an erased memory must not stay
        in a process's memory. Such an index would be rebuilt at its next use anyway
        (``_sync``: it fell behind the log's horizon)."""
        idle = time.time() - settings.MEMORYWEB_KEYWORD_LOG_MINUTES * 60
        with self._lock:
            if keep in self._held:
                self._total += size - self._sizes.get(keep, 0)
                self._sizes[keep] = size
            budget = self.budget()
            while self._held:
                oldest = next(iter(self._held))
                if oldest == keep or (self._total <= budget and self._held[oldest].synced_at >= idle):
                    break
                self._held.pop(oldest)
                self._total -= self._sizes.pop(oldest, 0)

    # --- what lexical.search and the store registry ask ------------------------------

    def search(self, namespace_id: int, terms: Sequence[str], limit: int, weight: float,
               candidates: QuerySet | None = None, index_terms: Sequence[str] | None = None,
               every: bool = False, build: bool = True) -> list[tuple[str, float]] | None:
        """Best (memory id hex, score) of the namespace, best first; None when a term is a
        multi-token phrase (the SQL engine answers those). ``index_terms``: the query as
        index terms already (an encrypted namespace's blind tokens), ``terms`` unused.
        ``every``: only documents holding every term (FTS5's AND; the scores are the OR's,
        as bm25() sums the same per-term parts). ``build`` False (``auto``): None too when
        the index is not held in step (not built, evicted, being built, or behind a
        ``rebuild``) — the caller asks the table and may :meth:`warm` it."""
        phrases = query_terms(terms) if index_terms is None else list(index_terms)
        if phrases is None:
            return None
        index = self.synced(namespace_id) if build else self._ready(namespace_id)
        if index is None:
            return None
        with index.lock:
            if every:
                found = self._search_every(index, phrases, limit, weight, candidates)
            else:
                found = self._search(index, phrases, limit, weight, candidates)
            size = index.nbytes()
        # A heavy query builds the impact layout (keyword_topk.py) inside the search: its
        # bytes count against the budget now, not at the namespace's next sync.
        self._evict(namespace_id, size)
        return found

    def _ready(self, namespace_id: int) -> NamespaceIndex | None:
        """The namespace's index caught up with the log if it is held and needs no
        build, else None; never waits for a build (a search holds the lock briefly)."""
        with self._lock:
            index = self._held.get(namespace_id)
            if index is None or namespace_id in self._building:
                return None
            self._held.move_to_end(namespace_id)
        while not index.lock.acquire(timeout=0.01):
            with self._lock:
                if namespace_id in self._building:
                    return None
        try:
            if not self._sync(index, build=False):
                return None
            size = index.nbytes()
        finally:
            index.lock.release()
        self._evict(namespace_id, size)
        return index

    # --- auto: builds off the request path ----------------------------------------------

    def warm(self, namespace_id: int) -> None:
        """Have this process's warming thread build the namespace's index (``auto``: its
        table answered a query the index could have). Once per namespace at a time; not
        for one whose index alone outgrew the budget; not where
        ``background.AUTONOMOUS_THREADS`` is off (test processes)."""
        if not background.AUTONOMOUS_THREADS:
            return
        with self._lock:
            if namespace_id in self._building or namespace_id in self._too_large:
                return
            self._building.add(namespace_id)
            if self._warming_pid != os.getpid():
                self._warming_pid = os.getpid()
                threading.Thread(target=self._warm_forever, name="keyword-warm",
                                 daemon=True).start()
        self._queue.put(namespace_id)

    def _warm_forever(self) -> None:
        while True:
            namespace_id = self._queue.get()
            try:
                close_old_connections()
                self.build(namespace_id)
            except Exception:  # the table keeps answering; the next query asks again
                logger.exception("keyword index: the build of namespace %s failed", namespace_id)
            finally:
                with self._lock:
                    self._building.discard(namespace_id)
                close_old_connections()

    def build(self, namespace_id: int) -> None:
        """Build (or catch up) the namespace's index now, as the warming thread does. An
        index larger than the whole budget is dropped and not built again in this
        process: it would evict every other namespace's at each of its builds."""
        _, size = self._caught_up(namespace_id)
        if size > self.budget():
            with self._lock:
                self._too_large.add(namespace_id)
            self.drop(namespace_id)
            logger.warning("keyword index: namespace %s needs %.0f MB, more than "
                           "MEMORYWEB_KEYWORD_MEMORY_MB: its table answers", namespace_id,
                           size / 2**20)
            return
        self._evict(namespace_id, size)

    @staticmethod
    def _search(index: NamespaceIndex, phrases: Sequence[str], limit: int, weight: float,
                candidates: QuerySet | None) -> list[tuple[str, float]]:
        """``search`` on the synced index; the caller holds ``index.lock``."""
        if candidates is None:
            return index.search(phrases, weight, limit)
        # Filters: check the top few against them first; a selective filter that
        # leaves fewer than ``limit`` of those reads its ids (all of them, ids only).
        probe = index.search(phrases, weight, max(4 * limit, _FILTER_PROBE))
        if not probe:
            return []
        ok = {_hex(pk) for part in _parts([pk for pk, _ in probe])
              for pk in candidates.filter(pk__in=part).values_list("pk", flat=True)}
        kept = [(pk, score) for pk, score in probe if pk in ok]
        if len(kept) >= limit or len(probe) < max(4 * limit, _FILTER_PROBE):
            return kept[:limit]
        allowed = index.mask(_hex(pk) for pk in candidates.values_list("pk", flat=True))
        return index.search(phrases, weight, limit, allowed)

    @staticmethod
    def _search_every(index: NamespaceIndex, phrases: Sequence[str], limit: int, weight: float,
                      candidates: QuerySet | None) -> list[tuple[str, float]]:
        """``search`` of the documents holding every term (in the columns searched: their
        own words when ``weight`` is 0); the caller holds ``index.lock``."""
        allowed = ~index.mask(())
        for term in phrases:
            docs, own, _ = index.postings(term)
            if weight <= 0:
                docs = docs[own > 0]
            holding = index.mask(())
            holding[docs] = True
            allowed &= holding
        if candidates is not None:
            allowed &= index.mask(_hex(pk) for pk in candidates.values_list("pk", flat=True))
        if not allowed.any():
            return []
        return index.search(phrases, weight, limit, allowed)

    def held(self, namespace_id: int, memory_ids: Sequence) -> int:
        """How many of these memories this process's index of the namespace holds, after
        catching up with the log (0 if it holds none of the namespace)."""
        if namespace_id not in self.loaded():
            return 0
        index = self.synced(namespace_id)
        with index.lock:
            return sum(index.holds(_hex(pk)) for pk in memory_ids)

    def count(self, namespace_id: int) -> int | None:
        if namespace_id not in self.loaded():
            return None
        index = self.synced(namespace_id)
        return len(index)

    def forget(self, namespace_id: int, memory_ids: Sequence) -> None:
        """Drop these memories from this process's index now (erasure, after its commit)."""
        with self._lock:
            index = self._held.get(namespace_id)
        if index is not None:
            with index.lock:
                index.remove([_hex(pk) for pk in memory_ids])


def _parts(values: list[str]) -> Iterable[list[uuid.UUID]]:
    for start in range(0, len(values), _CHUNK):
        yield [uuid.UUID(v) for v in values[start:start + _CHUNK]]


_process = Indexes()


def indexes() -> Indexes:
    """This process's indexes."""
    return _process
