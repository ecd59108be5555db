"""``MEMORYWEB_KEYWORD_ENGINE = "auto"`` (the default): a namespace with its FTS5 table is
ranked by its in-memory index once this process has built it, by the table meanwhile;
the build runs on the process's warming thread, never on the request path
(apps/memories/keyword_index_log.py ``Indexes.warm``, docs/recall.md). What must hold:
the same answers either way (FTS5's bm25 and the index's are the same floats), writes
seen at once after the build (every write is logged), lookups never warm, a build in
progress is not waited for, an index larger than the budget is not kept; on PostgreSQL
``auto`` is ``sql``.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.core import background
from apps.memories import keyword_index_log, lexical
from apps.memories.keyword_tables import fts_table
from apps.memories.models import KeywordChange
from tests.helpers.batches import store_many as _store
from tests.helpers.hash_embedder import use_distinct_hash_embedder

sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="auto is sql on PostgreSQL")
QUERIES = ["osprey harbour", "lantern", "glacier pepper violin", "nothing-matches-this"]
TEXTS = [f"{a} {b} note {i}" for i, (a, b) in enumerate(
    [("osprey", "harbour"), ("lantern", "quarry"), ("glacier", "pepper"), ("violin", "osprey"),
     ("harbour", "lantern"), ("pepper", "pepper"), ("quarry", "glacier"), ("osprey", "osprey")] * 3)]


@pytest.fixture(autouse=True)
def _auto(settings, monkeypatch, keyword_tables):
    settings.MEMORYWEB_KEYWORD_ENGINE = "auto"
    use_distinct_hash_embedder(monkeypatch)


@pytest.fixture
def warmed(monkeypatch) -> list[int]:
    """The namespaces a search asked the warming thread to build (which tests never run)."""
    asked: list[int] = []
    monkeypatch.setattr(keyword_index_log.Indexes, "warm", lambda self, ns: asked.append(ns))
    return asked


def _answers(namespace_id: int) -> dict:
    return {(text, weight): lexical.search(namespace_id, lexical.build_query(text), 10,
                                           context_weight=weight)
            for text in QUERIES for weight in (None, 0.0)}


def _asked_the_table(queries, namespace_id: int) -> bool:
    return any(fts_table(namespace_id) in q["sql"] for q in queries)


@sqlite_only
def test_the_table_answers_until_the_index_is_built_then_the_index_the_same(agent, alpha, warmed):
    _store(agent, TEXTS)
    with CaptureQueriesContext(connection) as queries:
        from_table = _answers(alpha.pk)
    assert _asked_the_table(queries, alpha.pk)
    assert alpha.pk not in keyword_index_log.indexes().loaded()  # not built on the request path
    assert set(warmed) == {alpha.pk}
    keyword_index_log.indexes().build(alpha.pk)  # what the warming thread does
    warmed.clear()
    with CaptureQueriesContext(connection) as queries:
        from_index = _answers(alpha.pk)
    assert not _asked_the_table(queries, alpha.pk) and not warmed
    assert from_index.keys() == from_table.keys()
    for key, hits in from_table.items():
        assert [pk for pk, _ in from_index[key]] == [pk for pk, _ in hits], key
        assert [s for _, s in from_index[key]] == pytest.approx([s for _, s in hits], rel=1e-9)


@sqlite_only
def test_writes_after_the_build_are_seen_by_the_index(agent, team_admin, alpha, warmed):
    _store(agent, TEXTS)
    keyword_index_log.indexes().build(alpha.pk)
    assert KeywordChange.objects.filter(namespace=alpha, op="add").exists()  # every write logged
    _store(agent, ["a kittiwake over the harbour"])
    with CaptureQueriesContext(connection) as queries:
        found = lexical.search(alpha.pk, lexical.build_query("kittiwake"), 5)
    assert not _asked_the_table(queries, alpha.pk)
    assert len(found) == 1
    response = team_admin.patch(f"/api/v1/memories/{found[0][0]}", {"content": "a cormorant on the pier"})
    assert response.status_code == 200, response.content
    with CaptureQueriesContext(connection) as queries:
        assert lexical.search(alpha.pk, lexical.build_query("kittiwake"), 5) == []
        assert [pk for pk, _ in lexical.search(alpha.pk, lexical.build_query("cormorant"), 5)] == [
            found[0][0]]
    assert not _asked_the_table(queries, alpha.pk)


@sqlite_only
def test_a_lookup_the_index_cannot_answer_does_not_warm_it(agent, alpha, warmed):
    _store(agent, TEXTS)
    query = lexical.build_query("osprey harbour")
    every = dataclasses.replace(query, operator="AND",
                                engine_query=query.engine_query.replace(" OR ", " AND "))
    assert lexical.search(alpha.pk, every, 5)
    assert warmed == []


@sqlite_only
def test_a_build_in_progress_is_not_waited_for(agent, alpha, warmed):
    _store(agent, TEXTS)
    indexes = keyword_index_log.indexes()
    expected = _answers(alpha.pk)
    index = indexes._entry(alpha.pk)
    with indexes._lock:
        indexes._building.add(alpha.pk)
    holding, release = threading.Event(), threading.Event()

    def builder() -> None:  # the warming thread, holding the index's lock while it builds
        with index.lock:
            holding.set()
            release.wait(60)

    thread = threading.Thread(target=builder)
    thread.start()
    try:
        assert holding.wait(10)
        assert _answers(alpha.pk) == expected  # the table answered, the lock still held
    finally:
        release.set()
        thread.join()
        with indexes._lock:
            indexes._building.discard(alpha.pk)


@sqlite_only
def test_an_index_larger_than_the_budget_is_not_kept(agent, alpha, monkeypatch):
    _store(agent, TEXTS)
    indexes = keyword_index_log.Indexes(budget=1)
    monkeypatch.setattr(keyword_index_log, "_process", indexes)
    monkeypatch.setattr(background, "AUTONOMOUS_THREADS", True)
    indexes.build(alpha.pk)
    assert indexes.loaded() == []
    indexes.warm(alpha.pk)  # not queued again: no thread started for it
    assert indexes._building == set()
    assert lexical.search(alpha.pk, lexical.build_query("osprey"), 3)  # the table answers


@sqlite_only
@pytest.mark.django_db(transaction=True)
def test_the_warming_thread_builds_the_index(agent, alpha, monkeypatch):
    """The real thread: it reads the committed rows on its own connection."""
    _store(agent, TEXTS)
    indexes = keyword_index_log.Indexes()
    monkeypatch.setattr(keyword_index_log, "_process", indexes)
    monkeypatch.setattr(background, "AUTONOMOUS_THREADS", True)
    expected = _answers(alpha.pk)  # from the table; asks the thread to build it
    for _ in range(600):
        if alpha.pk in indexes.loaded() and not indexes._building:
            break
        time.sleep(0.05)
    assert alpha.pk in indexes.loaded() and indexes.builds == 1
    with CaptureQueriesContext(connection) as queries:
        assert _answers(alpha.pk) == expected
    assert not _asked_the_table(queries, alpha.pk)


def test_auto_is_sql_on_postgresql_and_logs_every_write_on_sqlite(agent, alpha):
    agent.post("/api/v1/memories", {"content": "Quokka census notes."})
    agent.post("/api/v1/memories", {"content": "More quokka notes."})
    ops = list(KeywordChange.objects.order_by("id").values_list("op", flat=True))
    if connection.vendor == "sqlite":  # the first write made the table (a rebuild row)
        assert ops == ["rebuild", "add", "add"] and keyword_index_log.enabled()
    else:
        assert ops == [] and not keyword_index_log.enabled()


@sqlite_only
def test_a_bulk_ingest_since_the_last_search_is_caught_up_off_the_request_path(
        agent, alpha, warmed, monkeypatch):
    _store(agent, TEXTS)
    indexes = keyword_index_log.indexes()
    indexes.build(alpha.pk)
    assert indexes.builds == 1
    monkeypatch.setattr(keyword_index_log, "INLINE_CHANGES", 5)
    _store(agent, [f"a shearwater sighting {i}" for i in range(8)])  # 8 log rows > 5
    with CaptureQueriesContext(connection) as queries:
        from_table = lexical.search(alpha.pk, lexical.build_query("shearwater"), 20)
    assert _asked_the_table(queries, alpha.pk) and warmed == [alpha.pk]
    indexes.build(alpha.pk)  # the warming thread: 8 rows, over a quarter of the 24 held: a build
    assert indexes.builds == 2
    with CaptureQueriesContext(connection) as queries:
        assert lexical.search(alpha.pk, lexical.build_query("shearwater"), 20) == from_table
    assert not _asked_the_table(queries, alpha.pk) and len(from_table) == 8
    _store(agent, ["one more shearwater"])  # a few rows: caught up inline, no build
    assert len(lexical.search(alpha.pk, lexical.build_query("shearwater"), 20)) == 9
    assert indexes.builds == 2


@sqlite_only
def test_other_namespaces_writes_do_not_send_a_search_to_the_table(agent, outsider, alpha, warmed,
                                                                   monkeypatch):
    """The log's ids are shared by all namespaces: many rows of another namespace since
    this one's last search leave it a single row behind, caught up inline."""
    _store(agent, TEXTS)
    keyword_index_log.indexes().build(alpha.pk)
    monkeypatch.setattr(keyword_index_log, "INLINE_CHANGES", 5)
    _store(outsider, [f"beta's own note {i}" for i in range(12)])
    _store(agent, ["a petrel at dusk"])
    with CaptureQueriesContext(connection) as queries:
        assert len(lexical.search(alpha.pk, lexical.build_query("petrel"), 5)) == 1
    assert not _asked_the_table(queries, alpha.pk) and not warmed
