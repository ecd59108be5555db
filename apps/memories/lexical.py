"""Keyword recall from the SQL database itself: SQLite FTS5 (BM25) or PostgreSQL full text.

SQLite: one FTS5 table per namespace, ``memories_fts_<namespace id>`` (migration 0007),
so BM25's corpus statistics (row count, document frequencies, average length) and the
common-term pruning see only the caller's own memories; with one shared table another
tenant's words moved the scores, which told a caller whether a word was stored
elsewhere. The services keep the table in step inside the write's transaction
(``add``/``remove``/``replace``); a namespace's table is created by the write that takes
it past ``MEMORYWEB_SMALL_KEYWORD_LIMIT`` memories and dropped with the namespace. A
namespace under the limit has no table: its keyword recall is ranked in memory from its
rows, with the same matches and scores (small_keywords.py), so thousands of small
namespaces add nothing to the schema. PostgreSQL: a generated tsvector column (migration 0002),
ranked by ts_rank_cd without corpus statistics, so nothing here applies to it.

Encrypted namespaces (docs/encryption.md): the index holds blind tokens, never words
(blind_tokens.py). The rows are read through the ORM (SQL holds ciphertext) and written
as token text into the same FTS5 columns (PostgreSQL: ``blind_search`` and
``context_search`` under the ``simple`` configuration, migration 0021); ``search`` and
``prune_common`` blind the query's terms with the namespace's key before they reach the
engine. A namespace without its key raises KeyUnavailable, never a word query.

Queries are built from the user's words only: the text is split into word tokens,
common English stopwords are dropped, and each token is quoted (FTS5) or passed as a
bare lexeme (PostgreSQL), so quotes, ``NEAR``, ``*``, ``-`` or parentheses in a query
are just characters, never syntax.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import snowballstemmer
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import QuerySet

from apps.memories import blind_tokens, keyword_index_log, keyword_search, small_keywords, term_counts
from apps.memories.keyword_index import tokens
from apps.memories.keyword_tables import (  # noqa: F401 (re-exported: lexical.held etc.)
    _CHUNK,
    _chunks,
    _is_missing_table,
    _per_chunk,
    compact,
    fts_table,
    held,
    held_as_context,
    vocab_table,
)

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
    #: The namespace's document count per term when ``prune_common`` looked them up
    #: (``search`` reuses them rather than asking the vocabulary twice).
    frequency: tuple[tuple[str, int], ...] | None = None
    #: How ``engine_query`` joins the terms ("OR", or "AND" for a lookup of every word):
    #: an encrypted namespace's query is rebuilt from the blinded terms with it.
    operator: str = "OR"


def build_query(text: str) -> LexicalQuery:
    """Word tokens minus stopwords, deduplicated, at most MAX_TERMS, as an OR query."""
    words = [w.lower() for w in _WORD.findall(text)]
    terms = tuple(dict.fromkeys(w for w in words if w not in STOPWORDS))[:MAX_TERMS]
    if not terms:  # a query of stopwords only: still search for what was asked
        terms = tuple(dict.fromkeys(words))[:MAX_TERMS]
    return _with_terms(terms)


def _with_terms(terms: tuple[str, ...], dropped: tuple[str, ...] = (),
                frequency: Mapping[str, int] | None = None) -> LexicalQuery:
    if connection.vendor == "postgresql":
        engine_query = " | ".join(terms)
    else:
        engine_query = " OR ".join(f'"{t}"' for t in terms)
    counts = None if frequency is None else tuple((t, frequency.get(t, 0)) for t in terms)
    return LexicalQuery(terms, engine_query, dropped, counts)


#: One Porter stemmer (the algorithm of FTS5's porter tokenizer) per thread: a snowball
#: stemmer keeps the word it works on in itself, so threads sharing one corrupt each
#: other's words (found by bench/load.py: IndexError under 32 concurrent agents).
_stemmers = threading.local()


def _stem(term: str) -> str:
    stemmer = getattr(_stemmers, "porter", None)
    if stemmer is None:
        stemmer = _stemmers.porter = snowballstemmer.stemmer("porter")
    return stemmer.stemWord(term)
#: namespace id -> (memories, when counted); re-counted at most once a minute.
_totals: dict[int, tuple[int, float]] = {}
_TOTAL_TTL = 60.0
#: Below this many memories in the namespace nothing is pruned: every query is cheap,
#: and in a small index a share is a handful of memories.
PRUNE_FROM_ROWS = 2000


def prune_common(query: LexicalQuery, namespace_id: int, max_share: float | None = None) -> LexicalQuery:
    """Leave out terms found in more than ``max_share`` of the namespace's memories (SQLite).

    Such terms barely move BM25 (their IDF is near zero) but make the engine score
    every memory that contains them: on the benchmark corpus they set the tail of the
    keyword stage (p95 5.8 -> 3.5 ms at 0.2). Counts are the namespace's own (its
    table's FTS5 vocabulary, looked up by Porter stem), never the server's: what is
    dropped, and shown as ``lexical_dropped``, must not depend on other tenants' words.
    A term whose stem is not found is kept. If every term is common, the two rarest
    stay. PostgreSQL ranks without document frequencies and is left as is.
    """
    share = settings.MEMORYWEB_LEXICAL_MAX_DF if max_share is None else max_share
    if connection.vendor != "sqlite" or share >= 1.0 or len(query.terms) < 2:
        return query
    with connection.cursor() as cursor:
        total = _total_rows(namespace_id)
        if total < PRUNE_FROM_ROWS:  # small index: every query is cheap
            return query
        frequency = _frequencies(cursor, namespace_id, query.terms)
    if frequency is None:  # memories written around the services: not indexed yet
        return query
    keep = tuple(t for t in query.terms if frequency[t] <= share * total)
    if not keep:
        rarest = set(sorted(query.terms, key=frequency.__getitem__)[:2])
        keep = tuple(t for t in query.terms if t in rarest)
    if len(keep) == len(query.terms):  # the query as built (a person's AND query stays one)
        return dataclasses.replace(query, frequency=tuple((t, frequency[t]) for t in query.terms))
    dropped = tuple(t for t in query.terms if t not in keep)
    return _with_terms(keep, dropped, frequency)


def _frequencies(cursor, namespace_id: int, terms: Sequence[str]) -> dict[str, int] | None:
    """How many of the namespace's memories hold each term (by its Porter stem, from the
    table's FTS5 vocabulary; 0 if the stem is not there), or None without a table."""
    stems = _vocab_terms(namespace_id, terms)
    unique = sorted({stem for stem in stems.values() if stem is not None})
    if not unique:
        return dict.fromkeys(terms, 0)
    epoch = _total_epoch(namespace_id)  # term_counts.py: counts as old as the total
    counts = term_counts.known(namespace_id, epoch, unique)
    missing = [stem for stem in unique if stem not in counts]
    if missing:
        try:
            cursor.execute(f"SELECT term, doc FROM {vocab_table(namespace_id)} WHERE term IN "
                           f"({', '.join(['%s'] * len(missing))})", missing)
        except OperationalError as exc:
            if _is_missing_table(exc):
                return None
            raise
        found = dict(cursor.fetchall())
        fresh = {stem: found.get(stem, 0) for stem in missing}
        term_counts.keep(namespace_id, epoch, fresh)
        counts.update(fresh)
    return {term: counts.get(stem, 0) if stem is not None else 0 for term, stem in stems.items()}


def _vocab_terms(namespace_id: int, terms: Sequence[str]) -> dict[str, str | None]:
    """Each query term as the fts5vocab holds it: its Porter stem, or in an encrypted
    namespace the blind token of its one index term (None for a phrase of several or
    none, which counts 0 there as its stem, not a vocabulary entry, does in the clear)."""
    if not blind_tokens.encrypted(namespace_id):
        return {term: _stem(term) for term in terms}
    blinder = blind_tokens.for_namespace(namespace_id)
    found = {term: blinder.terms(term) for term in terms}
    return {term: parts[0] if len(parts) == 1 else None for term, parts in found.items()}


def _total_epoch(namespace_id: int) -> float | None:
    """When the namespace's remembered total was counted, or None if it is older than a
    minute (or was never counted in this process)."""
    at = _totals.get(namespace_id, (0, None))[1]
    return at if at is not None and time.monotonic() - at <= _TOTAL_TTL else None


def _total_rows(namespace_id: int) -> int:
    """The namespace's memories, re-counted at most once a minute per process."""
    rows = _totals.get(namespace_id, (0, None))[0]
    if _total_epoch(namespace_id) is None:
        rows = small_keywords.memories(namespace_id)
        _totals[namespace_id] = (rows, time.monotonic())
    return rows


def search(namespace_id: int, query: LexicalQuery, limit: int,
           candidates: QuerySet | None = None, context_weight: float | None = None,
           ) -> list[tuple[uuid.UUID, float]]:
    """Best keyword matches in a namespace, best first; ``candidates`` narrows further.

    Scores are "higher is better": BM25 negated on SQLite, ts_rank_cd on PostgreSQL.
    A memory's conversation context (apps/memories/context.py) matches too, its words
    weighted by ``context_weight`` (default ``MEMORYWEB_LEXICAL_CONTEXT_WEIGHT``) against
    the memory's own; 0 searches the memories' own words only (a person's lookup).
    Pass ``candidates`` (a Memory queryset) only when there are filters: the IN
    subquery costs more than the match itself (measured on SQLite at 10k memories:
    12 ms with it, 3 ms without). Expired memories are dropped by the caller.
    """
    if not query.terms:
        return []
    weight = settings.MEMORYWEB_LEXICAL_CONTEXT_WEIGHT if context_weight is None else context_weight
    if blind_tokens.encrypted(namespace_id):
        return _search_blind(namespace_id, query, limit, candidates, weight)
    indexable = keyword_index_log.enabled() and query.engine_query == _with_terms(query.terms).engine_query
    if indexable:
        # The in-memory engine (keyword_index.py): the same BM25 without scoring every
        # match in SQL. OR queries only (a lookup's every-word or phrase query stays SQL).
        found = keyword_index_log.indexes().search(namespace_id, query.terms, limit, weight, candidates,
                                                   build=keyword_index_log.builds_inline())
        if found is not None:
            return [(uuid.UUID(pk), score) for pk, score in found]
    restrict, params = _restrict(candidates)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            found = keyword_search.postgresql(cursor, namespace_id, query.terms, query.engine_query,
                                              limit=limit, weight=weight, restrict=restrict,
                                              restrict_params=params)
    else:
        with connection.cursor() as cursor:
            try:
                found = keyword_search.sqlite(
                    cursor, fts_table(namespace_id), query.terms, limit=limit, weight=weight,
                    restrict=restrict, restrict_params=params, expression=query.engine_query,
                    frequency=lambda: (dict(query.frequency) if query.frequency is not None
                                       else _frequencies(cursor, namespace_id, query.terms)))
            except OperationalError as exc:
                if _is_missing_table(exc):  # a small namespace (small_keywords.py)
                    return _search_small(namespace_id, query, limit, weight, candidates)
                raise
        _table_answered(namespace_id, indexable)
    return [(_as_uuid(pk), score) for pk, score in found]


def _table_answered(namespace_id: int, indexable: bool) -> None:
    """The table answered. With ``sql`` an in-memory index of the namespace this process
    made while it was small is no longer used nor kept in step (its writes are no longer
    logged), so it goes now, not at its eviction. With ``auto``, a query the index could
    have answered has it built off the request path for the next ones."""
    if not keyword_index_log.enabled():
        keyword_index_log.indexes().drop(namespace_id)
    elif indexable and not keyword_index_log.builds_inline():
        keyword_index_log.indexes().warm(namespace_id)


def _search_small(namespace_id: int, query: LexicalQuery, limit: int, weight: float,
                  candidates: QuerySet | None, blinder: blind_tokens.Blinder | None = None,
                  ) -> list[tuple[uuid.UUID, float]]:
    """``search`` in a namespace without its FTS5 table: each term as the index terms it
    makes (blind tokens with ``blinder``), joined as the query joins them."""
    phrases = ([tokens(term) for term in query.terms] if blinder is None
               else blind_tokens.index_terms(blinder, query.terms))
    return small_keywords.search(namespace_id, phrases, query.operator == "AND", limit, weight,
                                 candidates)


def _restrict(candidates: QuerySet | None) -> tuple[str, list]:
    if candidates is None:
        return "", []
    subquery, params = candidates.values("id").query.sql_with_params()
    column = "m.id" if connection.vendor == "postgresql" else "memory_id"
    return f" AND {column} IN ({subquery})", list(params)


def blind_pg_query(blinder: blind_tokens.Blinder, query: LexicalQuery) -> str | None:
    """PostgreSQL: the query over an encrypted namespace's tokens (``to_tsquery('simple',
    …)``): each term's tokens as a phrase, joined as the query joins its terms; None when
    no term has a token (nothing matches, as in the clear)."""
    operands = [" <-> ".join(blinder.terms(term)) for term in query.terms]
    operands = [operand for operand in operands if operand]
    return (" & " if query.operator == "AND" else " | ").join(operands) if operands else None


def _search_blind(namespace_id: int, query: LexicalQuery, limit: int,
                  candidates: QuerySet | None, weight: float) -> list[tuple[uuid.UUID, float]]:
    """``search`` in an encrypted namespace: each term becomes the phrase of blind tokens
    the index holds for it (blind_tokens.py), joined as the query joined them, so the
    engine computes the scores it would on the words. KeyUnavailable propagates."""
    blinder = blind_tokens.for_namespace(namespace_id)
    phrases = tuple(blinder.phrase(term) for term in query.terms)
    indexable = keyword_index_log.enabled() and query.engine_query == _with_terms(query.terms).engine_query
    if indexable:
        terms = blind_tokens.index_terms(blinder, query.terms)
        indexable = all(len(parts) <= 1 for parts in terms)
        if indexable:
            found = keyword_index_log.indexes().search(
                namespace_id, (), limit, weight, candidates,
                index_terms=[parts[0] for parts in terms if parts],
                build=keyword_index_log.builds_inline())
            if found is not None:
                return [(uuid.UUID(pk), score) for pk, score in found]
    restrict, params = _restrict(candidates)
    if connection.vendor == "postgresql":
        engine_query = blind_pg_query(blinder, query)
        if engine_query is None:
            return []
        operands = [" <-> ".join(phrase.split()) for phrase in phrases if phrase]
        with connection.cursor() as cursor:
            found = keyword_search.postgresql(
                cursor, namespace_id, operands, engine_query, limit=limit, weight=weight,
                restrict=restrict, restrict_params=params, config="simple",
                column="m.blind_search")
        return [(_as_uuid(pk), score) for pk, score in found]
    expression = f" {query.operator} ".join(f'"{phrase}"' for phrase in phrases)

    def frequency() -> dict[str, int] | None:
        counts = (dict(query.frequency) if query.frequency is not None
                  else _frequencies(cursor, namespace_id, query.terms))
        if counts is None:
            return None
        return {phrase: counts.get(term, 0) for term, phrase in zip(query.terms, phrases, strict=True)}

    with connection.cursor() as cursor:
        try:
            found = keyword_search.sqlite(
                cursor, fts_table(namespace_id), phrases, limit=limit, weight=weight,
                restrict=restrict, restrict_params=params, expression=expression,
                frequency=frequency)
        except OperationalError as exc:
            if _is_missing_table(exc):  # a small namespace (small_keywords.py)
                return _search_small(namespace_id, query, limit, weight, candidates, blinder)
            raise
    _table_answered(namespace_id, indexable)
    return [(_as_uuid(pk), score) for pk, score in found]


def _as_uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


# --- the per-namespace tables (SQLite) -------------------------------------------------

def _create(cursor, namespace_id: int) -> None:
    """Create the namespace's tables if they do not exist yet (a cheap no-op if they do).

    Created by the write that takes the namespace past ``MEMORYWEB_SMALL_KEYWORD_LIMIT``
    (``_make_table``) rather than with the namespace: a small one costs no schema entries
    (each FTS5 table is six, its vocabulary view one, and every new connection parses the
    whole schema), and namespaces made by any path (admin, ORM, fixtures) get one without
    a hook on their creation.
    """
    table = fts_table(namespace_id)
    cursor.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING fts5("
                   "memory_id UNINDEXED, content, context, context_id UNINDEXED, "
                   "tokenize = 'porter unicode61 remove_diacritics 2')")
    cursor.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {vocab_table(namespace_id)} "
                   f"USING fts5vocab({table}, 'row')")


#: At most this many characters of a memory's conversation context are indexed with it
#: (apps/memories/context.py embeds the same).
CONTEXT_CHARS = 1000
_CONTEXT_SQL = {"sqlite": f"coalesce(substr(c.content, 1, {CONTEXT_CHARS}), '')",
                "postgresql": f"to_tsvector('english', left(c.content, {CONTEXT_CHARS}))"}


def _insert_rows(namespace_id: int, where: str) -> str:
    """SQLite: the statement copying memories of the namespace (``m``, narrowed by
    ``where``) into its table, each with its context's words (``add`` and ``rebuild``).

    Narrowed (ids), the namespace is a check on the rows found, not the index to walk
    (``+``): SQLite has no statistics here and, given ``namespace_id = ?`` and
    ``id IN (3 or more)``, walked every memory of the namespace for each batch."""
    namespace = "+m.namespace_id" if where else "m.namespace_id"
    return (f"INSERT INTO {fts_table(namespace_id)}(memory_id, content, context, context_id) "
            f"SELECT m.id, m.content, {_CONTEXT_SQL['sqlite']}, m.context_memory_id "
            "FROM memories_memory m LEFT JOIN memories_memory c ON c.id = m.context_memory_id "
            f"WHERE {namespace} = %s{where}")


def add(namespace_id: int, memory_ids: Sequence[uuid.UUID], written: Sequence | None = None) -> None:
    """Index these memories of the namespace, copied from memories_memory, with their
    conversation context's words (the ``context`` column on SQLite; ``context_search``
    on PostgreSQL, where the content's own words are a generated column).

    Call inside the transaction that wrote them, so the index commits or rolls back with
    the rows. Reading the text back from the table keeps the stored id format (and the
    content) exactly what the memories table holds. ``written``: the saved ``Memory``
    instances of ``memory_ids``; an encrypted namespace's tokens are then made from
    their text rather than from the rows read back and opened again.
    """
    if not memory_ids:
        return
    small = small_keywords.is_small(namespace_id)
    if small and small_keywords.outgrown(namespace_id):
        _make_table(namespace_id)  # these memories with every other
        small = False
    elif not small:
        _add(namespace_id, memory_ids, written)
    if keyword_index_log.enabled() or small:
        keyword_index_log.log(namespace_id, memory_ids, "add")


def _make_table(namespace_id: int) -> int:
    """Give a small namespace its FTS5 table, filled with every memory it holds (in the
    caller's transaction: it commits or rolls back with the write); its rows. The
    in-memory indexes of it are no longer used: this process's goes after the commit,
    and a ``rebuild`` row tells every other process to let go of its own at its next
    sync (``sql`` logs no write to a namespace with a table; ``auto`` builds it anew later).
    An encrypted namespace's rows are all read back through the ORM (the write's are
    among them)."""
    transaction.on_commit(lambda: keyword_index_log.indexes().drop(namespace_id))
    keyword_index_log.log(namespace_id, (), "rebuild")
    if blind_tokens.encrypted(namespace_id):
        return _add_blind(namespace_id, None)
    return _fill(namespace_id)


def _fill(namespace_id: int) -> int:
    """Create the namespace's table and copy every memory of it in; its rows."""
    with connection.cursor() as cursor:
        _create(cursor, namespace_id)
        cursor.execute(_insert_rows(namespace_id, ""), [namespace_id])
        return cursor.rowcount


def _add(namespace_id: int, memory_ids: Sequence[uuid.UUID], written: Sequence | None = None) -> None:
    if blind_tokens.encrypted(namespace_id):
        _add_blind(namespace_id, memory_ids, written=written)
        return
    if connection.vendor == "postgresql":
        _set_context_search(memory_ids)
        return
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        for part in _chunks(memory_ids):
            cursor.execute(_insert_rows(namespace_id, f" AND m.id IN ({', '.join(['%s'] * len(part))})"),
                           [namespace_id, *part])


def _add_blind(namespace_id: int, memory_ids: Sequence[uuid.UUID] | None, rebuild: bool = False,
               written: Sequence | None = None) -> int:
    """Index memories of an encrypted namespace (every one for None) as blind tokens,
    read through the ORM (SQL holds ciphertext) unless ``written`` gives them; how many.
    Same columns as the clear: FTS5's ``content``/``context``, or PostgreSQL's
    ``blind_search``/``context_search``. ``rebuild``: the table is replaced, once every
    row's tokens are made (a key that is missing fails before anything is dropped)."""
    rows = list(blind_tokens.blinded_rows(namespace_id, memory_ids, written))
    if rebuild and connection.vendor == "sqlite":
        drop(namespace_id)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for start in range(0, len(rows), _CHUNK):
                part = rows[start:start + _CHUNK]
                cursor.execute(
                    "UPDATE memories_memory m SET blind_search = to_tsvector('simple', t.content), "
                    "context_search = CASE WHEN t.has_context THEN to_tsvector('simple', t.context) END "
                    "FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::bool[]) "
                    "AS t(id, content, context, has_context) WHERE m.id = t.id",
                    [[r[0] for r in part], [r[1] for r in part], [r[2] for r in part],
                     [r[3] is not None for r in part]])
        return len(rows)
    if connection.vendor != "sqlite":
        return 0
    with connection.cursor() as cursor:
        _create(cursor, namespace_id)
        if rows:
            cursor.executemany(f"INSERT INTO {fts_table(namespace_id)}(memory_id, content, "
                               "context, context_id) VALUES (%s, %s, %s, %s)", rows)
    return len(rows)


def _set_context_search(memory_ids: Sequence[uuid.UUID | str] | None, namespace_id: int | None = None,
                        ) -> None:
    """PostgreSQL: (re)compute ``context_search`` from each memory's context as it is now
    (NULL without one) for these memories, or every memory of ``namespace_id``."""
    statement = (f"UPDATE memories_memory m SET context_search = (SELECT {_CONTEXT_SQL['postgresql']} "
                 "FROM memories_memory c WHERE c.id = m.context_memory_id) "
                 "WHERE (m.context_memory_id IS NOT NULL OR m.context_search IS NOT NULL) AND ")
    with connection.cursor() as cursor:
        if memory_ids is None:
            cursor.execute(statement + "m.namespace_id = %s", [namespace_id])
            return
        for part in _chunks(memory_ids):
            cursor.execute(statement + f"m.id IN ({', '.join(['%s'] * len(part))})", part)


def remove(namespace_id: int, memory_ids: Sequence[uuid.UUID]) -> None:
    """Unindex these memories (SQLite only); call inside the transaction that deletes them.

    memory_id is not indexed by FTS5, so each statement scans the namespace's rows once:
    delete in chunks, never one statement per memory.
    """
    if not memory_ids:
        return
    small = small_keywords.is_small(namespace_id)
    if keyword_index_log.enabled() or small:
        keyword_index_log.log(namespace_id, memory_ids, "remove")
    term_counts.forget(namespace_id)
    if not small:
        _remove(namespace_id, memory_ids)


def _remove(namespace_id: int, memory_ids: Sequence[uuid.UUID]) -> None:
    if connection.vendor != "sqlite" or not memory_ids:
        return
    _per_chunk(f"DELETE FROM {fts_table(namespace_id)} WHERE memory_id IN", memory_ids)


def replace(namespace_id: int, memory_ids: Sequence[uuid.UUID]) -> None:
    """Re-index memories whose content or context changed, in the edit's transaction."""
    if not memory_ids:
        return
    small = small_keywords.is_small(namespace_id)
    if keyword_index_log.enabled() or small:
        keyword_index_log.log(namespace_id, memory_ids, "add")  # "add": re-read as it is now
    term_counts.forget(namespace_id)  # an edit may take words out (a redaction)
    if not small:
        _remove(namespace_id, memory_ids)
        _add(namespace_id, memory_ids)


def drop(namespace_id: int) -> None:
    """Drop the namespace's tables (SQLite only); FTS5 drops its shadow tables with them.
    This process's in-memory index of it goes too (others evict it in time)."""
    keyword_index_log.indexes().drop(namespace_id)
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {vocab_table(namespace_id)}")
        cursor.execute(f"DROP TABLE IF EXISTS {fts_table(namespace_id)}")
    _totals.pop(namespace_id, None)
    term_counts.forget(namespace_id)


def rebuild(namespace_id: int) -> int:
    """Rebuild the namespace's table from memories_memory, the truth; returns its rows.

    For ``manage.py reindex``: repairs whatever writes that bypassed the services left
    out (or behind). Run it inside a transaction so recall never sees a half-built table.
    With the in-memory engine, every process rebuilds its index of the namespace at its
    next search (a ``rebuild`` row in the change log). A namespace at or under
    ``MEMORYWEB_SMALL_KEYWORD_LIMIT`` loses its table (small_keywords.py). The old table
    goes with its freed pages zeroed (SQLite), as a merged namespace's does: the text of
    memories deleted around the services must not stay in free pages.
    """
    from apps.memories.writes import secure_deletes  # writes.py imports this module

    if keyword_index_log.enabled() or connection.vendor == "sqlite":
        keyword_index_log.log(namespace_id, (), "rebuild")
    term_counts.forget(namespace_id)
    if connection.vendor == "sqlite" and not small_keywords.outgrown(namespace_id):
        with secure_deletes():
            drop(namespace_id)  # small: ranked in memory from its rows
        return small_keywords.memories(namespace_id)
    if blind_tokens.encrypted(namespace_id):
        with secure_deletes():
            return _add_blind(namespace_id, None, rebuild=True)
    if connection.vendor == "postgresql":
        _set_context_search(None, namespace_id)
    if connection.vendor != "sqlite":
        return 0
    with secure_deletes():
        drop(namespace_id)
    return _fill(namespace_id)


def drop_orphans() -> list[int]:
    """Drop the tables of namespaces that no longer exist (e.g. deleted by raw SQL)."""
    if connection.vendor != "sqlite":
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE %s",
                       ["memories_fts_%"])
        ids = {int(m.group(1)) for (name,) in cursor.fetchall()
               if (m := _TABLE_NAME.fullmatch(name))}
        cursor.execute("SELECT id FROM tenancy_namespace")
        orphans = sorted(ids - {row[0] for row in cursor.fetchall()})
    for namespace_id in orphans:
        drop(namespace_id)
    return orphans


_TABLE_NAME = re.compile(r"memories_fts_(\d+)")
