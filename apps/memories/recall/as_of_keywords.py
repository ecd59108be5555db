"""Keyword scores for texts that are not in the keyword index: an edited memory's words
as they were at an as-of recall's moment (``recall.as_of``).

The index holds today's text, so an as-of recall takes memories edited since its moment
out of the keyword channel and scores their past text here, on the scale the channel
uses, so each goes back into the channel's list where its score puts it:

- **SQLite** (FTS5): FTS5's ``bm25()`` computed in Python the way
  ``apps/memories/keyword_index.py`` computes it (tokens of ``porter unicode61
  remove_diacritics 2``, k1 1.2, b 0.75, the context's words at the channel's weight,
  the row's length over every column, FTS5's IDF clamp), with the namespace's own
  statistics read from its FTS5 table: the row count and token total from the table's
  averages record, each term's document count from its ``fts5vocab`` view. These are
  today's statistics (the index has no past ones), the same ones every other candidate
  of the recall is scored with.
- **PostgreSQL**: ``ts_rank_cd`` needs no corpus statistics, so the database ranks the
  past text itself (``to_tsvector('english', …)``), exactly as the channel ranks rows.

Left out (the memory then comes only from the vector channel, and docs/recall.md says
so): PostgreSQL with the in-memory keyword engine, whose BM25 statistics live in each
process's index, not in SQL.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence

from django.db import OperationalError, connection, transaction

from apps.memories import blind_tokens, keyword_index_log, lexical, small_keywords
from apps.memories.keyword_index import K1, B, tokens
from apps.memories.small_keywords import occurrences

#: (memory id, text at the moment, its conversation context's text or "").
Text = tuple[uuid.UUID, str, str]


def scores(namespace_id: int, query: lexical.LexicalQuery, texts: Sequence[Text],
           weight: float) -> list[tuple[uuid.UUID, float]]:
    """(id, score) of the texts that match ``query``, higher is better, as the namespace's
    keyword channel would score them; empty when the engine cannot be matched."""
    if not texts or not query.terms:
        return []
    # An encrypted namespace's index holds blind tokens (apps/memories/blind_tokens.py):
    # the past text is scored as its tokens, never sent to or looked up as words.
    blinder = blind_tokens.for_namespace(namespace_id) if blind_tokens.encrypted(namespace_id) else None
    if connection.vendor == "postgresql":
        return [] if keyword_index_log.enabled() else _postgresql(query, texts, weight, blinder)
    if connection.vendor != "sqlite":
        return []
    return _sqlite(namespace_id, query, texts, weight, blinder)


def _postgresql(query: lexical.LexicalQuery, texts: Sequence[Text], weight: float,
                blinder: blind_tokens.Blinder | None = None) -> list[tuple[uuid.UUID, float]]:
    """ts_rank_cd of each text (and its context's first characters, by ``weight``)."""
    config, cut, engine_query = "english", f"left(t.context, {lexical.CONTEXT_CHARS})", query.engine_query
    if blinder is not None:
        engine_query = lexical.blind_pg_query(blinder, query)
        if engine_query is None:
            return []
        config, cut = "simple", "t.context"
        texts = [(pk, blinder.text(content), blinder.text(blind_tokens.context_cut(context)))
                 for pk, content, context in texts]
    own = f"to_tsvector('{config}', t.content)"
    ctx = f"to_tsvector('{config}', {cut})"
    if weight > 0:
        score, match, first = f"ts_rank_cd({own}, q) + %s * ts_rank_cd({ctx}, q)", \
            f"({own} @@ q OR {ctx} @@ q)", [float(weight)]
    else:
        score, match, first = f"ts_rank_cd({own}, q)", f"{own} @@ q", []
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT t.i, {score} FROM unnest(%s::int[], %s::text[], %s::text[]) AS t(i, content, "
            f"context), to_tsquery('{config}', %s) q WHERE {match}",
            [*first, list(range(len(texts))), [t[1] for t in texts], [t[2] for t in texts],
             engine_query])
        return [(texts[index][0], float(value)) for index, value in cursor.fetchall()]


def _sqlite(namespace_id: int, query: lexical.LexicalQuery, texts: Sequence[Text],
            weight: float, blinder: blind_tokens.Blinder | None = None) -> list[tuple[uuid.UUID, float]]:
    """FTS5's bm25() of each text against the namespace's table statistics."""
    table = lexical.fts_table(namespace_id)
    terms = tokens if blinder is None else blinder.terms
    phrases = [terms(term) for term in query.terms]
    try:
        totals = _totals(table)
        if totals is None:
            return []
        rows, total_tokens = totals
        frequency = _document_counts(table, query.terms, phrases, weight, blinder is not None)
    except OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        # A small namespace (small_keywords.py): the same statistics from its rows.
        found = small_keywords.statistics(namespace_id, phrases, weight)
        if found is None:
            return []
        rows, total_tokens, counts = found
        frequency = dict(zip(query.terms, counts, strict=True))
    if rows <= 0:
        return []
    average = total_tokens / rows
    idf = []
    for term in query.terms:
        value = math.log((rows - frequency[term] + 0.5) / (frequency[term] + 0.5))
        idf.append(value if value > 0.0 else 1e-6)  # FTS5's clamp
    found = []
    for memory_id, content, context in texts:
        own, ctx = terms(content), terms(context[:lexical.CONTEXT_CHARS]) if context else []
        norm = K1 * (1 - B + B * (len(own) + len(ctx)) / average)
        score, matched = 0.0, False
        for phrase, term_idf in zip(phrases, idf, strict=True):
            hits = occurrences(own, phrase) + (weight * occurrences(ctx, phrase) if weight > 0 else 0)
            if hits > 0:
                matched = True
                score += term_idf * ((hits * (K1 + 1.0)) / (hits + norm))
        if matched:
            found.append((memory_id, score))
    return found


def _totals(table: str) -> tuple[int, int] | None:
    """(rows, tokens in every column) from the table's averages record (FTS5 keeps it in
    ``<table>_data`` at rowid 1: varints, the row count then each column's token total).

    FTS5 writes the record when a transaction or savepoint ends, so inside an open
    transaction that wrote the table (a test's, an enclosing request's) it is read inside
    a savepoint of its own, which makes FTS5 write it first."""
    sql = f"SELECT block FROM {table}_data WHERE id = 1"
    if connection.in_atomic_block:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
            row = cursor.fetchone()
    else:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            row = cursor.fetchone()
    if row is None or not row[0]:
        return None
    values = _varints(bytes(row[0]))
    return (values[0], sum(values[1:])) if values else None


def _varints(block: bytes) -> list[int]:
    """SQLite's variable-length integers, one after the other (fts5 ``GetVarint``)."""
    values, index = [], 0
    while index < len(block):
        value = 0
        for _ in range(8):
            byte = block[index]
            index += 1
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        else:  # the ninth byte carries 8 bits
            value = (value << 8) | block[index]
            index += 1
        values.append(value)
    return values


def _document_counts(table: str, terms: Sequence[str], phrases: Sequence[Sequence[str]],
                     weight: float, blind: bool = False) -> Mapping[str, int]:
    """How many of the namespace's rows match each term in the columns searched: the
    fts5vocab view for one-token terms over both columns (its ``doc``), a count of the
    phrase's matches otherwise (a ``foo_bar`` term, or the memory's own words only)."""
    counts: dict[str, int] = {}
    single = {term: phrase[0] for term, phrase in zip(terms, phrases, strict=True)
              if len(phrase) == 1 and weight > 0}
    with connection.cursor() as cursor:
        if single:
            stems = sorted(set(single.values()))
            cursor.execute(f"SELECT term, doc FROM {table}_vocab WHERE term IN "
                           f"({', '.join(['%s'] * len(stems))})", stems)
            by_stem = dict(cursor.fetchall())
            counts.update({term: by_stem.get(stem, 0) for term, stem in single.items()})
        columns = "{content context}" if weight > 0 else "content"
        for term, phrase in zip(terms, phrases, strict=True):
            if term in counts:
                continue
            if not phrase:  # no token: matches nothing
                counts[term] = 0
                continue
            cursor.execute(f"SELECT count(*) FROM {table} WHERE {table} MATCH %s",
                           [f'{columns} : ("{" ".join(phrase) if blind else term}")'])
            counts[term] = cursor.fetchone()[0]
    return counts
