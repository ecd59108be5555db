"""The keyword statement reads FTS5 rowids first (apps/memories/keyword_search.py).

Reading the UNINDEXED ``memory_id`` column loads each matching row's whole content record
(an encrypted namespace's blind-token rows are ~4x longer, often on overflow pages), so
the statement ranks ``(rowid, score)`` and maps only its top rows to memory ids. The
answer must stay exactly what the memory-id statement gave, ties included (equal scores
go by memory id): these tests compare every answer with that statement's, in a plain and
an encrypted namespace, whole and bounded (``MEMORYWEB_LEXICAL_WINDOW``), with and
without filters, on a corpus with many ties. SQLite only: PostgreSQL has no FTS5 table.

No vector enters these answers: the corpus is embedded by the model-free hash embedder
(tests/helpers/hash_embedder.py), and each test stores only the namespace it searches.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.core.roles import Role
from apps.memories import keyword_index_log, keyword_search, lexical
from apps.memories.models import Memory
from apps.tenancy.services import create_namespace
from bench.corpus import generate_memories, generate_queries
from tests.helpers.callers import make_caller
from tests.helpers.hash_embedder import use_distinct_hash_embedder

pytestmark = [pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's FTS5 statement only"),
              pytest.mark.usefixtures("keyword_tables")]  # about the FTS5 tables

#: Texts whose words are the same (punctuation and case differ, so dedup keeps each) and
#: stored without a session, so no conversation context adds to their length (FTS5's
#: bm25 counts every column's): equal scores, ordered by memory id.
TIED = [f"{word} pie{'!' * i}" for i in range(1, 9) for word in ("apple", "Apple")]
QUERIES = [*generate_queries(12, seed=3), "apple pie", "apple", "pie relay", "Kafka outage apple"]
LIMITS = (1, 2, 3, 5, 10, 20, 50, 400)


@pytest.fixture(autouse=True)
def _clean(key_store, monkeypatch):
    use_distinct_hash_embedder(monkeypatch)
    yield
    keyword_index_log.indexes().clear()


def _store(namespace, contents: list[str]) -> None:
    caller = make_caller(Role.AGENT, namespace, f"agent-{namespace.slug}")
    for start in range(0, len(contents), 100):
        batch = [{"content": text, "session_id": "" if text in TIED else f"s{(start + i) % 7}",
                  "kind": "fact" if (start + i) % 3 else "episode"}
                 for i, text in enumerate(contents[start:start + 100])]
        response = caller.post("/api/v1/memories/batch", {"memories": batch})
        assert response.status_code == 201, response.content


def _filled(slug: str):
    """A namespace ("sealed": an encrypted one) holding the corpus, ties among it."""
    contents = [m["content"] for m in generate_memories(160, seed=4)] + TIED
    namespace = create_namespace(slug, encrypted=slug == "sealed")
    _store(namespace, contents)
    assert Memory.objects.filter(namespace=namespace).count() == len(contents)  # no dedup
    return namespace


@pytest.fixture
def plain(db):
    return _filled("plain")


def _memory_id_statement(cursor, table, terms, *, limit, weight, restrict, restrict_params,
                         frequency, expression=None):
    """keyword_search.sqlite as it was: the plan's memory-id statement, run alone."""
    window = settings.MEMORYWEB_LEXICAL_WINDOW
    last_rowid = 0
    if window:
        cursor.execute(f"SELECT max(id) FROM {table}_content")
        last_rowid = cursor.fetchone()[0] or 0
    statement = keyword_search.plan(
        table, terms, columns="{content context}" if weight > 0 else "content", weight=weight,
        limit=limit, restrict=restrict, restrict_params=restrict_params, last_rowid=last_rowid,
        window=window, rare_df=settings.MEMORYWEB_LEXICAL_RARE_DF,
        frequency=frequency() if window and last_rowid > window else None, expression=expression)
    cursor.execute(statement.sql, statement.args)
    return [(row[0], float(row[1])) for row in cursor.fetchall()]


def _answers(namespace, monkeypatch, candidates=None):
    """Every query at every limit and context weight: the search's answers now, and as the
    memory-id statement gave them."""
    asked = [(text, limit, weight) for text in QUERIES for limit in LIMITS for weight in (0.0, 0.25)]

    def run():
        return [lexical.search(namespace.pk, lexical.prune_common(lexical.build_query(text), namespace.pk),
                               limit, candidates=None if candidates is None else candidates(namespace),
                               context_weight=weight) for text, limit, weight in asked]

    now = run()
    with monkeypatch.context() as patch:
        patch.setattr(keyword_search, "sqlite", _memory_id_statement)
        before = run()
    return now, before


@pytest.fixture(params=["plain", "sealed"])
def namespace(request, db):
    """The plain or the encrypted namespace: each test stores only the one it searches."""
    return _filled(request.param)


@pytest.fixture
def pruning(monkeypatch):
    monkeypatch.setattr(lexical, "PRUNE_FROM_ROWS", 0)
    monkeypatch.setattr(lexical, "_totals", {})


def test_the_memory_id_statement_is_todays(plain):
    """The reference these tests compare with is the statement as it was written before."""
    table = lexical.fts_table(plain.pk)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT memory_id, -bm25({table}, 0.0, 1.0, %s, 0.0) AS score FROM {table} "
                       f"WHERE {table} MATCH %s ORDER BY score DESC, memory_id LIMIT %s",
                       [0.25, '{content context} : ("apple" OR "pie")', 7])
        literal = [(row[0], float(row[1])) for row in cursor.fetchall()]
        assert len(literal) == 7
        assert _memory_id_statement(cursor, table, ["apple", "pie"], limit=7, weight=0.25, restrict="",
                                    restrict_params=(), frequency=lambda: None) == literal


def test_answers_are_the_memory_id_statements(namespace, monkeypatch, pruning):
    now, before = _answers(namespace, monkeypatch)
    assert sum(len(found) for found in now) > 1000
    assert now == before


def test_answers_with_filters_are_the_memory_id_statements(namespace, monkeypatch, pruning):
    now, before = _answers(namespace, monkeypatch,
                           lambda ns: Memory.objects.filter(namespace=ns, kind="episode"))
    assert any(now)
    assert now == before


def test_bounded_answers_are_the_memory_id_statements(namespace, monkeypatch, settings, pruning):
    settings.MEMORYWEB_LEXICAL_WINDOW = 40
    settings.MEMORYWEB_LEXICAL_RARE_DF = 3
    with CaptureQueriesContext(connection) as queries:
        now, before = _answers(namespace, monkeypatch)
    assert any("UNION ALL" in q["sql"] for q in queries.captured_queries)  # bounded plans ran
    assert now == before
    now, before = _answers(namespace, monkeypatch,
                           lambda ns: Memory.objects.filter(namespace=ns, kind="fact"))
    assert now == before


def _match_statements(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if " MATCH " in q["sql"]]


def test_the_statement_ranks_rowids_and_maps_only_its_top_rows(namespace, monkeypatch):
    query = lexical.build_query("apple pie")
    with CaptureQueriesContext(connection) as queries:
        found = lexical.search(namespace.pk, query, 20)
    [sql] = _match_statements(queries)
    ranking = sql.split(" FROM (", 1)[1].split(") AS top ", 1)[0]  # every match is scored here
    assert ranking.split(" FROM ", 1)[0].startswith("SELECT rowid AS rid, -bm25("), sql
    assert "memory_id" not in ranking, sql
    assert ranking.endswith(f"ORDER BY score DESC, rid LIMIT {keyword_search.fetched(20)}"), sql
    assert len(found) == len(TIED)  # every match (the corpus has no other apple or pie)


def test_ties_across_the_cut_go_by_memory_id(namespace, monkeypatch):
    """16 tied rows first: within what the statement fetches for the larger limits (one
    statement), past it for the smaller (the memory-id statement decides); either way the
    lowest memory ids come first."""
    tied = {m.pk.hex for m in Memory.objects.filter(namespace=namespace)
            if m.content.lower().startswith("apple pie")}
    assert len(tied) == len(TIED)
    query = lexical.build_query("apple pie")
    ways = set()
    for limit in (1, 5, 10, 16, 20):
        with CaptureQueriesContext(connection) as queries:
            found = lexical.search(namespace.pk, query, limit, context_weight=0.0)
        statements = len(_match_statements(queries))
        assert statements == (1 if keyword_search.fetched(limit) > len(tied) else 2), limit
        ways.add(statements)
        assert [pk.hex for pk, _ in found][:len(tied)] == sorted(tied)[:limit]
        assert len({score for _, score in found[:len(tied)]}) == 1
    assert ways == {1, 2}
