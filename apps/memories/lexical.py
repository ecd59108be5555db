"""Keyword recall from the SQL database itself: SQLite FTS5 (BM25) or PostgreSQL full text.

The index is maintained by the database (see migration 0002), so it is always in step
with the memories table. Queries are built from the user's words only: the text is
split into word tokens, common English stopwords are dropped, and each token is
quoted (FTS5) or passed as a bare lexeme (PostgreSQL), so quotes, ``NEAR``, ``*``,
``-`` or parentheses in a query are just characters, never syntax.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass

import snowballstemmer
from django.conf import settings
from django.db import connection
from django.db.models import QuerySet

MAX_TERMS = 32

STOPWORDS = frozenset("""
a about above after again against all am an and any are aren as at be because been before
being below between both but by can could did didn do does doesn doing don down during each
few for from further had has have having he her here hers herself him himself his how i if
in into is isn it its itself just me more most my myself no nor not now of off on once only
or other our ours ourselves out over own same she should so some such than that the their
theirs them themselves then there these they this those through to too under until up very
was wasn we were weren what when where which while who whom why will with would you your
yours yourself yourselves s t ll re ve d m
""".split())

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class LexicalQuery:
    terms: tuple[str, ...]
    #: The query exactly as the engine receives it (for ``explain``).
    engine_query: str
    #: Terms left out as too common (``prune_common``), for ``explain``.
    dropped: tuple[str, ...] = ()


def build_query(text: str) -> LexicalQuery:
    """Word tokens minus stopwords, deduplicated, at most MAX_TERMS, as an OR query."""
    words = [w.lower() for w in _WORD.findall(text)]
    terms = tuple(dict.fromkeys(w for w in words if w not in STOPWORDS))[:MAX_TERMS]
    if not terms:  # a query of stopwords only: still search for what was asked
        terms = tuple(dict.fromkeys(words))[:MAX_TERMS]
    return _with_terms(terms)


def _with_terms(terms: tuple[str, ...], dropped: tuple[str, ...] = ()) -> LexicalQuery:
    if connection.vendor == "postgresql":
        engine_query = " | ".join(terms)
    else:
        engine_query = " OR ".join(f'"{t}"' for t in terms)
    return LexicalQuery(terms, engine_query, dropped)


_stemmer = snowballstemmer.stemmer("porter")  # the algorithm of FTS5's porter tokenizer
_total = {"rows": 0, "at": 0.0}
_TOTAL_TTL = 60.0
#: Below this many memories nothing is pruned: every query is cheap, and in a small
#: index a share is a handful of memories.
PRUNE_FROM_ROWS = 2000


def prune_common(query: LexicalQuery, max_share: float | None = None) -> LexicalQuery:
    """Leave out terms found in more than ``max_share`` of all memories (SQLite).

    Such terms barely move BM25 (their IDF is near zero) but make the engine score
    every memory that contains them: on the benchmark corpus they set the tail of the
    keyword stage (p95 5.8 -> 3.5 ms at 0.2). Document counts come from the FTS5
    vocabulary (``memories_fts_vocab``), looked up by Porter stem; a term whose stem is
    not found is kept. If every term is common, the two rarest stay. PostgreSQL ranks
    without document frequencies and is left as is.
    """
    share = settings.MEMORYWEB_LEXICAL_MAX_DF if max_share is None else max_share
    if connection.vendor != "sqlite" or share >= 1.0 or len(query.terms) < 2:
        return query
    stems = {term: _stemmer.stemWord(term) for term in query.terms}
    unique = sorted(set(stems.values()))
    with connection.cursor() as cursor:
        if _total_rows(cursor) < PRUNE_FROM_ROWS:  # small index: every query is cheap
            return query
        cursor.execute("SELECT term, doc FROM memories_fts_vocab WHERE term IN "
                       f"({', '.join(['%s'] * len(unique))})", unique)
        counts = dict(cursor.fetchall())
        limit = share * _total_rows(cursor)
    frequency = {term: counts.get(stem, 0) for term, stem in stems.items()}
    keep = tuple(t for t in query.terms if frequency[t] <= limit)
    if not keep:
        rarest = set(sorted(query.terms, key=frequency.__getitem__)[:2])
        keep = tuple(t for t in query.terms if t in rarest)
    if len(keep) == len(query.terms):
        return query
    return _with_terms(keep, tuple(t for t in query.terms if t not in keep))


def _total_rows(cursor) -> int:
    """Memories in the keyword index, re-counted at most once a minute per process."""
    now = time.monotonic()
    if now - _total["at"] > _TOTAL_TTL:
        cursor.execute("SELECT count(*) FROM memories_memory")
        _total.update(rows=cursor.fetchone()[0], at=now)
    return _total["rows"]


def search(namespace_id: int, query: LexicalQuery, limit: int,
           candidates: QuerySet | None = None) -> list[tuple[uuid.UUID, float]]:
    """Best keyword matches in a namespace, best first; ``candidates`` narrows further.

    Scores are "higher is better": BM25 negated on SQLite, ts_rank_cd on PostgreSQL.
    Pass ``candidates`` (a Memory queryset) only when there are filters: the IN
    subquery costs more than the match itself (measured on SQLite at 10k memories:
    12 ms with it, 3 ms without). Expired memories are dropped by the caller.
    """
    if not query.terms:
        return []
    restrict, params = "", []
    if candidates is not None:
        subquery, params = candidates.values("id").query.sql_with_params()
        restrict = f" AND {'m.id' if connection.vendor == 'postgresql' else 'memory_id'} IN ({subquery})"
    if connection.vendor == "postgresql":
        sql = (
            "SELECT m.id, ts_rank_cd(m.search, q) AS score "
            "FROM memories_memory m, to_tsquery('english', %s) q "
            f"WHERE m.search @@ q AND m.namespace_id = %s{restrict} "
            "ORDER BY score DESC, m.id LIMIT %s"
        )
        args = [query.engine_query, namespace_id, *params, limit]
    else:
        # The namespace is a token of the ns column (migration 0005), so FTS5 walks only
        # this namespace's postings; bm25 weighs the content column alone.
        sql = (
            "SELECT memory_id, -bm25(memories_fts, 0.0, 0.0, 1.0) AS score FROM memories_fts "
            f"WHERE memories_fts MATCH %s{restrict} "
            "ORDER BY score DESC, memory_id LIMIT %s"
        )
        scoped = f'ns : "n{int(namespace_id)}" AND content : ({query.engine_query})'
        args = [scoped, *params, limit]
    with connection.cursor() as cursor:
        cursor.execute(sql, args)
        return [(_as_uuid(row[0]), float(row[1])) for row in cursor.fetchall()]


def _as_uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
