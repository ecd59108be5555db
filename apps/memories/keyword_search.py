"""The keyword statement, bounded so its cost does not grow with the namespace.

FTS5 ranks by computing BM25 for every row that matches the OR query and then sorting:
the work grows with the namespace (measured in-process on bench/corpus.py texts, the
stage's p50 went 10 -> 45 -> 87 ms at 10k, 50k and 100k memories). Above
``MEMORYWEB_LEXICAL_WINDOW`` indexed rows, the statement is split by where a match can
come from, and every part is cheap for FTS5 (a ``rowid`` range and a short doclist):

* the **recent window**: every query term, in the ``window`` most recently indexed rows
  (a rowid range FTS5 seeks to);
* the **rare terms** (found in at most ``rare_df`` of the namespace's memories), in the
  rows before the window: ``rare AND common`` plus ``rare NOT common``, so the rows they
  find carry the same BM25 score they would in the full query (the common terms'
  phrases are in both expressions; under NOT they count zero, as they would).

What the bounded statement leaves out: older rows that match only common terms. Each
such term is in more than ``rare_df`` memories, and the vector channel still covers the
whole namespace. That cost too much recall to be the default (docs/recall.md: LoCoMo
scaled to a 100k namespace's proportions, hybrid R@5 0.703 -> 0.485), so the window is
opt-in: with ``MEMORYWEB_LEXICAL_WINDOW`` 0 (the default), and below the window, the
statement is the full query. Scores are "higher is better" (BM25 negated).

PostgreSQL (``postgresql``) is bounded the same way with what it has: the window is the
most recent memories by ``created_at`` (the namespace's index), and a term is rare when
a probe reading at most ``rare_df`` + 1 of its older matches comes back short. The GIN
index only marks matches; the heap reads and ts_rank_cd are what grew with the namespace.
lexical.py owns the tables and the query's terms; this module only the statements.

SQLite reads **rowids first**: ``memory_id`` is an UNINDEXED column, so selecting it made
FTS5 load every matching row's whole content record to rank the matches (an encrypted
namespace's blind-token rows are ~4x longer, often on overflow pages: in plain sqlite3
at 10k rows, 3.7 ms a query against 1.3 ms by rowid; 2.9 against 1.5 with words). The
statement ranks ``(rowid, score)``, keeps the top :func:`fetched` rows and joins only
those to their memory ids, in the same statement (one snapshot). The answer is exactly
the memory-id statement's, equal scores going by memory id: when the rows tied with the
last one kept run past what was fetched, that statement itself runs
(``KeywordPlan.sql``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from django.conf import settings


@dataclass(frozen=True)
class KeywordPlan:
    #: The statement by memory id: ``(memory_id, score)`` by score, then memory id.
    sql: str
    args: list
    #: False: every match is scored (the namespace is within the window, or no window).
    bounded: bool
    #: The same matches ranked by rowid, the top :func:`fetched` of them joined to their
    #: memory ids: ``(memory_id, score)`` by score, then memory id ("" for no limit).
    by_rowid: str = ""
    by_rowid_args: list = field(default_factory=list)


def fetched(limit: int) -> int:
    """Rows the rowid statement keeps for ``limit``: as many again (at least 10) so that
    rows tied in score across the cut are still in it (on bench/corpus.py texts the ties
    past the cut at 10k memories were at most 4 at limit 10 and 27 at limit 50)."""
    return limit + max(limit, 10)


def plan(table: str, terms: Sequence[str], *, columns: str, weight: float, limit: int,
         restrict: str = "", restrict_params: Sequence = (), last_rowid: int = 0,
         window: int = 0, rare_df: int = 0,
         frequency: Mapping[str, int] | None = None, expression: str | None = None,
         ) -> KeywordPlan:
    """The statement for ``terms`` (already quoted-safe word tokens) over ``table``.

    ``restrict`` is an SQL condition starting with `` AND`` (filters; its parameters in
    ``restrict_params``), ``last_rowid`` the table's highest rowid, ``frequency`` the
    namespace's document count per term (terms missing from it count as rare).
    """
    score = f"-bm25({table}, 0.0, 1.0, %s, 0.0)"

    def match(expression: str) -> str:
        return f"{columns} : ({expression})"

    def part(expression: str, rowid: str, key: str) -> tuple[str, list]:
        return (f"SELECT {key}, {score} AS score FROM {table} WHERE {table} MATCH %s{rowid}{restrict}",
                [float(weight), match(expression), *([last_rowid - window] if rowid else []),
                 *restrict_params])

    every = _or(terms) if expression is None else expression
    # Only the OR of the terms splits by rarity; any other expression (a person's
    # every-word or phrase search) is always run whole.
    bounded = bool(window and last_rowid > window and frequency is not None and every == _or(terms))
    rare = [t for t in terms if bounded and frequency.get(t, 0) <= rare_df]
    common = [t for t in terms if t not in rare]
    split = bounded and bool(common)  # whole otherwise; with every term rare it is already cheap
    expressions = [(every, "")] if not split else [(every, " AND rowid > %s")] + (
        [(f"({_or(rare)}) AND ({_or(common)})", " AND rowid <= %s"),
         (f"({_or(rare)}) NOT ({_or(common)})", " AND rowid <= %s")] if rare else [])

    def ranked(key: str, column: str) -> tuple[str, list]:
        parts = [part(text, rowid, key) for text, rowid in expressions]
        sql = " UNION ALL ".join(text for text, _ in parts)
        if split:
            sql = f"SELECT {column}, score FROM ({sql})"
        return (f"{sql} ORDER BY score DESC, {column} LIMIT %s",
                [value for _, values in parts for value in values])

    sql, args = ranked("memory_id", "memory_id")
    by_rowid, by_rowid_args = "", []
    if limit > 0:  # (SQLite: a negative LIMIT is none; that stays the memory-id statement's)
        top, top_args = ranked("rowid AS rid", "rid")
        by_rowid = (f"SELECT m.memory_id, top.score FROM ({top}) AS top CROSS JOIN {table} AS m "
                    "ON m.rowid = top.rid ORDER BY top.score DESC, m.memory_id")
        by_rowid_args = [*top_args, fetched(limit)]
    return KeywordPlan(sql, [*args, limit], bounded, by_rowid, by_rowid_args)


def _or(terms: Sequence[str]) -> str:
    return " OR ".join(f'"{term}"' for term in terms)


def sqlite(cursor, table: str, terms: Sequence[str], *, limit: int, weight: float, restrict: str,
           restrict_params: Sequence, frequency: Callable[[], Mapping[str, int] | None],
           expression: str | None = None) -> list[tuple[str, float]]:
    """Run the plan for the namespace's FTS5 ``table``: (memory id, score) best first.
    ``frequency`` is called only when the table is larger than the window."""
    window = settings.MEMORYWEB_LEXICAL_WINDOW
    last_rowid = 0
    if window:  # off (the default): no extra statement per search
        cursor.execute(f"SELECT max(id) FROM {table}_content")
        last_rowid = cursor.fetchone()[0] or 0
    statement = plan(table, terms, columns="{content context}" if weight > 0 else "content",
                     weight=weight, limit=limit, restrict=restrict, restrict_params=restrict_params,
                     last_rowid=last_rowid, window=window, rare_df=settings.MEMORYWEB_LEXICAL_RARE_DF,
                     frequency=frequency() if window and last_rowid > window else None,
                     expression=expression)
    if statement.by_rowid:
        cursor.execute(statement.by_rowid, statement.by_rowid_args)
        rows = cursor.fetchall()
        # Exact unless the rows tied with the limit-th run to the end of what was kept
        # (then one of them left out may have a lower memory id).
        if len(rows) < fetched(limit) or rows[-1][1] < rows[limit - 1][1]:
            return [(row[0], float(row[1])) for row in rows[:limit]]
    cursor.execute(statement.sql, statement.args)
    return [(row[0], float(row[1])) for row in cursor.fetchall()]


#: The tsvector columns and text search configurations ``postgresql`` may be given.
_COLUMNS = {"m.search", "m.blind_search"}
_CONFIGS = {"english", "simple"}


def postgresql(cursor, namespace_id: int, terms: Sequence[str], engine_query: str, *, limit: int,
               weight: float, restrict: str, restrict_params: Sequence, config: str = "english",
               column: str = "m.search") -> list[tuple[str, float]]:
    """ts_rank_cd over the memory's tsvector (and its context's, by ``weight``), bounded
    above the window (module docstring). An encrypted namespace's query passes its blind
    tokens with ``config`` "simple" and ``column`` "m.blind_search" (lexical.py)."""
    if column not in _COLUMNS or config not in _CONFIGS:  # formatted into the statement
        raise ValueError(f"unknown tsvector column {column!r} or configuration {config!r}")
    if weight > 0:
        score = (f"ts_rank_cd({column}, q) + %s * ts_rank_cd(coalesce(m.context_search, "
                 "''::tsvector), q)")
        match, first = f"({column} @@ q OR m.context_search @@ q)", [float(weight)]
    else:
        score, match, first = f"ts_rank_cd({column}, q)", f"{column} @@ q", []
    bound, bound_args = "", []
    window = settings.MEMORYWEB_LEXICAL_WINDOW
    if window:
        cursor.execute("SELECT created_at FROM memories_memory WHERE namespace_id = %s "
                       "ORDER BY created_at DESC OFFSET %s LIMIT 1", [namespace_id, window])
        row = cursor.fetchone()
        if row is not None:
            rare = _rare_before(cursor, namespace_id, terms, row[0], match, config)
            bound, bound_args = " AND (m.created_at > %s OR m.id = ANY(%s::uuid[]))", [row[0], rare]
    cursor.execute(
        f"SELECT m.id, {score} AS score FROM memories_memory m, to_tsquery('{config}', %s) q "
        f"WHERE {match} AND m.namespace_id = %s{bound}{restrict} ORDER BY score DESC, m.id LIMIT %s",
        [*first, engine_query, namespace_id, *bound_args, *restrict_params, limit])
    return [(row[0], float(row[1])) for row in cursor.fetchall()]


def _rare_before(cursor, namespace_id: int, terms: Sequence[str], before, match: str,
                 config: str = "english") -> list:
    """Ids of the namespace's memories from ``before`` or earlier that hold one of the
    terms found there at most ``MEMORYWEB_LEXICAL_RARE_DF`` times (PostgreSQL)."""
    cap = settings.MEMORYWEB_LEXICAL_RARE_DF
    found: list = []
    for term in terms:
        cursor.execute(f"SELECT m.id FROM memories_memory m, to_tsquery('{config}', %s) q "
                       f"WHERE {match} AND m.namespace_id = %s AND m.created_at <= %s LIMIT %s",
                       [term, namespace_id, before, cap + 1])
        ids = [row[0] for row in cursor.fetchall()]
        if len(ids) <= cap:
            found.extend(ids)
    return found
