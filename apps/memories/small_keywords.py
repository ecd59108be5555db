"""Small namespaces' keyword recall without an FTS5 table of their own (SQLite).

Why: every FTS5 table is seven entries in the SQLite schema (the table, its five shadow
tables, the fts5vocab view). Every new connection parses the whole schema, and every
table created or dropped makes every open connection parse it again: at 2,000
namespaces a new connection's first query took 527 ms and creating a namespace 441 ms
(docs/performance.md, "Many namespaces"). So, as a small namespace's vectors stay out of
Chroma (small_index.py), its keywords stay out of the schema: a namespace gets its table
only once it holds more than ``MEMORYWEB_SMALL_KEYWORD_LIMIT`` memories (2,000), in the
write that crosses the limit, filled from memories_memory inside that write's
transaction (it commits or rolls back with the rows). It keeps the table from then on;
``reindex`` applies the rule again (a table of a namespace at or under the limit goes).

Until then (lexical.py asks :func:`is_small`):

- the write path logs each change in the keyword change log (keyword_index_log.py),
  whatever ``MEMORYWEB_KEYWORD_ENGINE`` says, so every process's view stays in step;
- a query of one-token terms (recall's OR of words, a lookup's every-word AND) is ranked
  by the in-memory index (keyword_index.py: FTS5's tokens and bm25(), the namespace's own
  statistics), built from memories_memory at the namespace's first search in a process;
- a query with a phrase of several tokens (a lookup's "quoted phrase", ``foo_bar``) is
  matched and scored by :func:`scan`, which reads the rows the in-memory postings say
  hold all of a phrase's tokens and computes what the table would: FTS5's matches,
  bm25() and order.

PostgreSQL indexes a column of the memory row (no schema per namespace): nothing here
applies to it.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence

from django.conf import settings
from django.db import OperationalError, connection
from django.db.models import QuerySet

from apps.memories import keyword_index_log
from apps.memories.keyword_index import K1, B, tokens
from apps.memories.keyword_tables import fts_table


def limit() -> int:
    return settings.MEMORYWEB_SMALL_KEYWORD_LIMIT


#: SQLite's ``pragma_table_list`` (3.37+) finds a table by name in the parsed schema; on
#: an older SQLite, sqlite_master is scanned instead (Django 5.2 accepts 3.31).
_LOOKUPS = ["SELECT 1 FROM pragma_table_list(%s) WHERE schema = 'main'",
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = %s"]


def has_table(namespace_id: int) -> bool:
    """Whether the namespace has its FTS5 table (SQLite; read inside the caller's
    transaction, so a writer sees what its own transaction made)."""
    with connection.cursor() as cursor:
        try:
            cursor.execute(_LOOKUPS[0], [fts_table(namespace_id)])
        except OperationalError:  # no pragma_table_list: an SQLite before 3.37
            del _LOOKUPS[:-1]
            cursor.execute(_LOOKUPS[0], [fts_table(namespace_id)])
        return cursor.fetchone() is not None


def is_small(namespace_id: int) -> bool:
    """SQLite, and the namespace has no FTS5 table: its keywords are ranked in memory."""
    return connection.vendor == "sqlite" and not has_table(namespace_id)


def memories(namespace_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM memories_memory WHERE namespace_id = %s", [namespace_id])
        return cursor.fetchone()[0]


def outgrown(namespace_id: int) -> bool:
    """More memories than the limit: the namespace gets its table (lexical.add)."""
    return memories(namespace_id) > limit()


# --- search ------------------------------------------------------------------------------

def search(namespace_id: int, phrases: Sequence[Sequence[str]], every: bool, count: int,
           weight: float, candidates: QuerySet | None = None) -> list[tuple[uuid.UUID, float]]:
    """The namespace's best ``count`` (id, score) for these terms, best first, as its FTS5
    table would rank them. ``phrases``: each query term as the index terms it makes
    (blind tokens in an encrypted namespace); ``every``: all of them must match (AND),
    else any (OR). ``weight`` weighs the context's words (0: own words only)."""
    if count <= 0 or not phrases:
        return []
    if every and any(not phrase for phrase in phrases):
        return []  # FTS5: a phrase of no token matches nothing, so neither does the AND
    if all(len(phrase) <= 1 for phrase in phrases):
        found = keyword_index_log.indexes().search(
            namespace_id, (), count, weight, candidates,
            index_terms=[phrase[0] for phrase in phrases if phrase], every=every)
        return [(uuid.UUID(pk), score) for pk, score in found or []]
    return scan(namespace_id, phrases, every, count, weight, candidates)


def scan(namespace_id: int, phrases: Sequence[Sequence[str]], every: bool, count: int,
         weight: float, candidates: QuerySet | None = None) -> list[tuple[uuid.UUID, float]]:
    """:func:`search` for phrases (positions, which the in-memory index does not keep):
    matches as FTS5 does (a phrase is its tokens in a row, in order, within one column),
    scores are bm25() with the namespace's own row count, average length and per-phrase
    document counts."""
    found = _phrase_hits(namespace_id, phrases, weight)
    if found is None:
        return []
    total, tokens_total, rows = found
    average = tokens_total / total
    idf = [_idf(total, sum(1 for _, _, hits in rows if hits[i] > 0)) for i in range(len(phrases))]
    matched = []
    for pk, length, hits in rows:
        if not (all(h > 0 for h in hits) if every else any(h > 0 for h in hits)):
            continue
        norm = K1 * (1 - B + B * length / average)
        score = 0.0
        for h, term_idf in zip(hits, idf, strict=True):
            if h > 0:
                score += term_idf * ((h * (K1 + 1.0)) / (h + norm))
        matched.append((pk, score))
    if candidates is not None and matched:
        allowed = {uuid.UUID(str(pk)).hex for part in keyword_index_log._parts([pk for pk, _ in matched])
                   for pk in candidates.filter(pk__in=part).values_list("pk", flat=True)}
        matched = [(pk, score) for pk, score in matched if pk in allowed]
    matched.sort(key=lambda item: (-item[1], item[0]))
    return [(uuid.UUID(pk), score) for pk, score in matched[:count]]


def statistics(namespace_id: int, phrases: Sequence[Sequence[str]], weight: float,
               ) -> tuple[int, int, list[int]] | None:
    """(rows, tokens in every column, rows matching each phrase) of the namespace, as its
    FTS5 table's statistics would say (recall/as_of_keywords.py scores past text with
    them); None when it holds no memory."""
    found = _phrase_hits(namespace_id, phrases, weight)
    if found is None:
        return None
    total, tokens_total, rows = found
    counts = [sum(1 for _, _, hits in rows if hits[i] > 0) for i in range(len(phrases))]
    return total, tokens_total, counts


def _phrase_hits(namespace_id: int, phrases: Sequence[Sequence[str]], weight: float,
                 ) -> tuple[int, int, list[tuple[str, int, list[float]]]] | None:
    """(rows, their tokens in every column, [(memory id hex, row length, each phrase's weighted
    occurrences)] for the rows that hold some phrase) of the namespace, or None when it
    is empty. Only rows holding every token of some phrase are read and tokenized: the
    in-memory index's postings name them (a phrase's tokens in other order or columns
    are checked here), and its totals give the row count and length."""
    index = keyword_index_log.indexes().synced(namespace_id)
    holding: set[str] = set()
    with index.lock:  # synced once: every phrase's candidates from the same state
        total, tokens_total = index.statistics()
        if not total:
            return None
        for phrase in filter(None, phrases):
            holding.update(pk for pk, _ in keyword_index_log.Indexes._search_every(
                index, list(dict.fromkeys(phrase)), total, weight, None))
    rows = []
    for pk, content, context in keyword_index_log._texts(namespace_id, sorted(holding)):
        own, ctx = own_and_context(content, context)
        rows.append((pk, len(own) + len(ctx), [_hits(own, ctx, phrase, weight) for phrase in phrases]))
    return total, tokens_total, rows


def own_and_context(content, context) -> tuple[list[str], list[str]]:
    """A row's index terms, own and context (cut to ``CONTEXT_CHARS``): tokenized here,
    or already blind tokens from an encrypted namespace (lists, already cut)."""
    from apps.memories.lexical import CONTEXT_CHARS  # lexical imports this module

    if isinstance(content, list):
        return content, list(context or ())
    return tokens(content), (tokens(context[:CONTEXT_CHARS]) if context else [])


def _hits(own: Sequence[str], ctx: Sequence[str], phrase: Sequence[str], weight: float) -> float:
    """The phrase's weighted occurrences in the columns searched (context by ``weight``)."""
    found = float(occurrences(own, phrase))
    if weight > 0:
        found += weight * occurrences(ctx, phrase)
    return found


def _idf(rows: int, matching: int) -> float:
    value = math.log((rows - matching + 0.5) / (matching + 0.5))
    return value if value > 0.0 else 1e-6  # FTS5's clamp


def occurrences(words: Sequence[str], phrase: Sequence[str]) -> int:
    """How often ``phrase`` (a token sequence) occurs in ``words``."""
    if not phrase:
        return 0
    if len(phrase) == 1:
        return list(words).count(phrase[0])
    size, wanted = len(phrase), list(phrase)
    return sum(1 for start in range(len(words) - size + 1) if list(words[start:start + size]) == wanted)
