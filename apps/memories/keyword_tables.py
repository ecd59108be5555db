"""The per-namespace FTS5 tables' names, and what erasure asks of them (SQLite).

lexical.py writes and searches the tables (and re-exports these names); a namespace has
one only once it outgrows ``MEMORYWEB_SMALL_KEYWORD_LIMIT`` (small_keywords.py). A
namespace without one holds no keyword row on disk: every count here is then 0.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from django.db import OperationalError, connection

#: Bound parameters per statement, well under SQLite's limit.
_CHUNK = 500


def fts_table(namespace_id: int) -> str:
    """The namespace's FTS5 table; the id is an int, so the name is safe to format in."""
    return f"memories_fts_{int(namespace_id)}"


def vocab_table(namespace_id: int) -> str:
    """An fts5vocab view of the namespace's table: per-term document counts for pruning."""
    return f"{fts_table(namespace_id)}_vocab"


def _is_missing_table(exc: OperationalError) -> bool:
    return "no such table" in str(exc)


def _per_chunk(statement: str, memory_ids: Sequence[uuid.UUID | str]) -> list[tuple]:
    """Run ``statement IN (…)`` per chunk of ids; each chunk's first row (if any). A
    namespace that never got its table (no memory written yet) yields nothing."""
    rows = []
    with connection.cursor() as cursor:
        for part in _chunks(memory_ids):
            try:
                cursor.execute(f"{statement} ({', '.join(['%s'] * len(part))})", part)
            except OperationalError as exc:
                if not _is_missing_table(exc):
                    raise
                return rows
            row = cursor.fetchone() if cursor.description else None
            if row is not None:
                rows.append(row)
    return rows


def _chunks(ids: Iterable[uuid.UUID]) -> Iterable[list[str]]:
    """Ids in the memories table's own storage format (32 hex digits), _CHUNK at a time."""
    values = [uuid.UUID(str(i)).hex for i in ids]
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def held_as_context(namespace_id: int, memory_ids: Sequence[uuid.UUID | str]) -> int:
    """How many keyword rows of the namespace still hold one of these memories' words as
    another memory's conversation context (erasure checks). PostgreSQL: the rows whose
    ``context_search`` was computed from one of them (the link names it), and any row of
    the namespace with context words but no context left (a re-index that did not run)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM memories_memory WHERE namespace_id = %s AND "
                           "context_search IS NOT NULL AND context_memory_id IS NULL", [namespace_id])
            stale = cursor.fetchone()[0]
        return stale + sum(count for (count,) in _per_chunk(
            "SELECT count(*) FROM memories_memory WHERE context_search IS NOT NULL "
            "AND context_memory_id IN", memory_ids))
    if connection.vendor != "sqlite":
        return 0
    return sum(count for (count,) in _per_chunk(
        f"SELECT count(*) FROM {fts_table(namespace_id)} WHERE context_id IN", memory_ids))


def held(namespace_id: int, memory_ids: Sequence[uuid.UUID | str]) -> int:
    """How many of these memories the namespace's keyword index still holds (erasure
    checks). PostgreSQL indexes a column of the memory row itself: 0 once it is gone."""
    if connection.vendor != "sqlite":
        return 0
    return sum(count for (count,) in _per_chunk(
        f"SELECT count(*) FROM {fts_table(namespace_id)} WHERE memory_id IN", memory_ids))


def compact(namespace_id: int) -> None:
    """Merge the namespace's FTS5 segments (SQLite), so deleted rows' tokens leave the
    index files too, not just the results (FTS5 keeps them until a merge; SQLite 3.40
    has no secure-delete option). Costs time proportional to the namespace's index:
    for erasure, not for every delete."""
    if connection.vendor != "sqlite":
        return
    table = fts_table(namespace_id)
    with connection.cursor() as cursor:
        try:
            cursor.execute(f"INSERT INTO {table}({table}) VALUES ('optimize')")
        except OperationalError as exc:
            if not _is_missing_table(exc):
                raise
