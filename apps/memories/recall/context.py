"""Between fusion and ranking: hybrid's session-context input, loading the fused ids'
servable rows from SQL, and the stored vectors that MMR and the reranker compare."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection
from django.utils import timezone

from apps.memories import sharing
from apps.memories.models import Memory
from apps.memories.recall import fusion, ranking
from apps.memories.recall.results import RecallResult, _Stopwatch
from apps.memories.vectorstore import get_vector_store


def _session_context(scored: list[fusion.Fused], filters: Mapping[str, Any],
                     options: ranking.RecallOptions, result: RecallResult) -> list[fusion.Fused]:
    """Hybrid: the ``session`` input (``fusion.session_context``), weighted like a channel.

    Skipped when the recall is filtered to one session: every candidate shares it, so
    the input would carry no information. Costs one primary-key query (~0.3 ms).
    """
    weight = options.weights.get("session", 0.0)
    if weight <= 0 or filters.get("session_id") or len(scored) < 2:
        return scored
    channels = sum(options.weights.get(name, 1.0) for name in ranking.RETRIEVAL_CHANNELS)
    with _Stopwatch(result.timings, "sql"):
        sessions = _sessions_of([entry.item for entry in scored])
    return fusion.session_context(scored, sessions, weight / (channels or 1.0))


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
        return {by_db_value[row[0]]: f"{row[1]}:{row[2]}" for row in cursor.fetchall()}


def _hydrate(sources: Sequence[sharing.Source], scored: Sequence[fusion.Fused], depth: int,
             filters: Mapping[str, Any]) -> list[ranking.Candidate]:
    """The first ``depth`` ranked ids that are servable rows of the sources, from SQL.

    Servable: live (not expired) and, unless ``include_invalid``, inside the validity
    window at ``valid_at`` (default now). Both are rare exclusions, so they are checked
    on the fetched rows rather than pushed into every channel. Loads ``depth`` rows
    first and only reads further down the ranking when some were dropped. By primary
    key only: with a namespace condition in the query SQLite's planner scans the
    namespace's index instead (measured: 4.6 ms vs 0.5 ms at 10k memories); the
    namespace, and for a shared namespace the grants' scope, is checked on the fetched
    rows instead.
    """
    by_namespace = {source.namespace.pk: source for source in sources}
    found: list[ranking.Candidate] = []
    now = timezone.now()
    valid_at = None if filters.get("include_invalid") else (filters.get("valid_at") or now)
    start, size = 0, depth
    while len(found) < depth and start < len(scored):
        window = scored[start : start + size]
        rows = Memory.objects.in_bulk([entry.item for entry in window])
        for entry in window:
            memory = rows.get(entry.item)
            source = by_namespace.get(memory.namespace_id) if memory is not None else None
            if (source is not None and source.covers(memory) and memory.is_live(now)
                    and (valid_at is None or memory.is_valid_at(valid_at))):
                memory.namespace = source.namespace  # no join, no per-row query
                found.append(ranking.Candidate(memory, entry.score, entry.parts))
        start, size = start + size, size * 2
    return found[:depth]


def _embeddings(candidates: Sequence[ranking.Candidate], ids: Sequence[str]) -> dict[str, Any]:
    """Stored vectors of ``ids`` (MMR, reranking), asked of each namespace's collection."""
    namespaces = {str(c.memory.pk): c.memory.namespace for c in candidates}
    by_namespace: dict[int, list[str]] = {}
    for memory_id in ids:
        by_namespace.setdefault(namespaces[memory_id].pk, []).append(memory_id)
    vectors: dict[str, Any] = {}
    for group in by_namespace.values():
        vectors.update(get_vector_store().embeddings(namespaces[group[0]], group))
    return vectors
