"""Between fusion and ranking: hybrid's session-context input, loading the fused ids'
servable rows from SQL, and the stored vectors that MMR and the reranker compare."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection
from django.utils import timezone

from apps.core.rows_by_pk import rows_by_pk
from apps.memories import sharing
from apps.memories.models import Memory
from apps.memories.recall import fusion, ranking
from apps.memories.recall.as_of import AsOf
from apps.memories.recall.results import RecallResult, _Stopwatch
from apps.memories.vectorstore import get_vector_store


def _session_context(scored: list[fusion.Fused], filters: Mapping[str, Any],
                     options: ranking.RecallOptions, result: RecallResult,
                     rows: Rows) -> list[fusion.Fused]:
    """Hybrid: the ``session`` input (``fusion.session_context``), weighted like a channel.

    Skipped when the recall is filtered to one session: every candidate shares it, so
    the input would carry no information. Costs at most one primary-key query (~0.3 ms),
    for the ids whose session ``rows`` does not know yet.
    """
    weight = options.weights.get("session", 0.0)
    if weight <= 0 or filters.get("session_id") or len(scored) < 2:
        return scored
    channels = sum(options.weights.get(name, 1.0) for name in ranking.RETRIEVAL_CHANNELS)
    with _Stopwatch(result.timings, "sql"):
        sessions = rows.sessions([entry.item for entry in scored])
    return fusion.session_context(scored, sessions, weight / (channels or 1.0))


class Rows:
    """The memory rows (and sessions) one recall has read by primary key, kept for its
    later stages so that none is read twice.

    Why: in hybrid mode the keyword channel answers well before the vector side (model +
    Chroma) on its helper thread, and the request thread would wait idle. It reads the
    keyword hits' rows and sessions meanwhile (:meth:`prefetch`), and after fusion only
    the vector side's new ids are left to read (``_session_context``, ``_hydrate``). A
    row read a few milliseconds before fusion is no staler than one read after it: a
    recall is not one transaction, and ``_hydrate`` checks liveness on whatever it has.
    """

    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, Memory] = {}
        self.absent: set[uuid.UUID] = set()  # asked for and not found
        self.session_of: dict[uuid.UUID, str | None] = {}

    def load(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Memory]:
        """The rows of ``ids`` that exist, read from SQL only if not read before."""
        missing = [i for i in ids if i not in self.rows and i not in self.absent]
        if missing:
            found = rows_by_pk(Memory, missing)  # in_bulk's rows, without its compiling
            self.rows.update(found)
            self.absent.update(i for i in missing if i not in found)
            for pk, memory in found.items():
                self.session_of[pk] = _session_key(memory.namespace_id, memory.session_id)
        return {i: self.rows[i] for i in ids if i in self.rows}

    def sessions(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """id -> ``<namespace id>:<session_id>`` of those memories that have one."""
        missing = [i for i in ids if i not in self.session_of]
        if missing:
            found = _sessions_of(missing)
            self.session_of.update({i: found.get(i) for i in missing})
        return {i: self.session_of[i] for i in ids if self.session_of.get(i)}

    def forget_rows(self) -> None:
        """Before a widened search: its rows are read again, as if first asked (a memory
        deleted meanwhile must not be served from here); sessions never change."""
        self.rows.clear()
        self.absent.clear()

    def prefetch(self, hits: Sequence[tuple[uuid.UUID, float]], depth: int) -> None:
        """While the vector side runs: the rows of the keyword channel's first ``depth``
        hits (those fusion most likely keeps) and the sessions of all of them."""
        ids = [pk for pk, _ in hits]
        self.load(ids[:depth])
        self.sessions(ids)


def _session_key(namespace_id: int, session_id: str) -> str | None:
    """Two namespaces may use the same session names: a session is namespace and name."""
    return f"{namespace_id}:{session_id}" if session_id else None


def _sessions_of(ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """id -> session of those memories that have one, as ``<namespace id>:<session_id>``
    (two namespaces may use the same session names). Raw SQL by primary key: the ORM
    spends more building this query than the database spends answering it (measured
    at 100 ids: 1.1 ms vs 0.3 ms on SQLite)."""
    pk = Memory._meta.pk
    by_db_value = {pk.get_db_prep_value(i, connection): i for i in ids}
    sql = (f"SELECT id, namespace_id, session_id "
           f"FROM {connection.ops.quote_name(Memory._meta.db_table)} "
           f"WHERE id IN ({', '.join(['%s'] * len(by_db_value))}) AND session_id <> ''")
    with connection.cursor() as cursor:
        cursor.execute(sql, list(by_db_value))
        return {by_db_value[row[0]]: _session_key(row[1], row[2]) for row in cursor.fetchall()}


def _hydrate(sources: Sequence[sharing.Source], scored: Sequence[fusion.Fused], depth: int,
             filters: Mapping[str, Any], as_of: AsOf | None, rows: Rows) -> list[ranking.Candidate]:
    """The first ``depth`` ranked ids that are servable rows of the sources, from SQL.

    Servable: live (not expired), unless ``include_superseded`` not superseded by a
    consolidation, and, unless ``include_invalid``, inside the validity window at
    ``valid_at`` (default now). Both are rare exclusions, so they are checked
    on the fetched rows rather than pushed into every channel. Loads ``depth`` rows
    first and only reads further down the ranking when some were dropped. By primary
    key only: with a namespace condition in the query SQLite's planner scans the
    namespace's index instead (measured: 4.6 ms vs 0.5 ms at 10k memories); the
    namespace, and for a shared namespace the grants' scope, is checked on the fetched
    rows instead.

    ``as_of`` (an as-of recall): a memory edited since the moment is its snapshot then
    (already checked against the scope, the filters and expiry), never the row; every
    other row must have been stored by the moment; the validity window is checked at
    the moment unless the request names ``valid_at``.
    """
    by_namespace = {source.namespace.pk: source for source in sources}
    found: list[ranking.Candidate] = []
    now = timezone.now()
    default_at = now if as_of is None else as_of.moment
    valid_at = None if filters.get("include_invalid") else (filters.get("valid_at") or default_at)
    superseded_too = bool(filters.get("include_superseded"))
    start, size = 0, depth
    while len(found) < depth and start < len(scored):
        window = scored[start : start + size]
        if as_of is None:
            fetched = rows.load([entry.item for entry in window])
        else:
            fetched = Memory.objects.in_bulk([e.item for e in window if e.item not in as_of.excluded])
            fetched.update({e.item: as_of.snapshots[e.item] for e in window if e.item in as_of.snapshots})
        for entry in window:
            memory = fetched.get(entry.item)
            source = by_namespace.get(memory.namespace_id) if memory is not None else None
            # a snapshot's expiry is its then; the row's was checked now (AsOf._rebuild)
            then = as_of is not None and entry.item in as_of.snapshots
            if (source is not None and source.covers(memory) and (then or memory.is_live(now))
                    and (valid_at is None or memory.is_valid_at(valid_at))
                    and (superseded_too or not _superseded(memory, default_at))
                    and (as_of is None or memory.created_at <= as_of.moment)):
                memory.namespace = source.namespace  # no join, no per-row query
                found.append(ranking.Candidate(memory, entry.score, entry.parts))
        start, size = start + size, size * 2
    return found[:depth]


def _superseded(memory: Memory, moment) -> bool:
    """Superseded by a consolidation at ``moment`` (now, or an as-of recall's moment: a
    memory merged since then was current then)."""
    return memory.superseded_at is not None and memory.superseded_at <= moment


def _embeddings(candidates: Sequence[ranking.Candidate], ids: Sequence[str],
                as_of: AsOf | None = None) -> dict[str, Any]:
    """Stored vectors of ``ids`` (MMR, reranking), asked of each namespace's collection;
    in an as-of recall, a snapshot's vector is its text's then (``AsOf.vectors``)."""
    namespaces = {str(c.memory.pk): c.memory.namespace for c in candidates}
    by_namespace: dict[int, list[str]] = {}
    vectors: dict[str, Any] = {}
    if as_of is not None:
        then = as_of.vectors([uuid.UUID(i) for i in ids if uuid.UUID(i) in as_of.snapshots])
        vectors.update({str(pk): vector for pk, vector in then.items()})
        ids = [i for i in ids if i not in vectors]
    for memory_id in ids:
        by_namespace.setdefault(namespaces[memory_id].pk, []).append(memory_id)
    for group in by_namespace.values():
        vectors.update(get_vector_store().embeddings(namespaces[group[0]], group))
    return vectors
