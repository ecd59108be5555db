"""Locked query counts on the hot endpoints, so an N+1 shows up as a failing test."""

from __future__ import annotations

import pytest
from django.db import connection

#: Keyword layouts (SQLite): a namespace's FTS5 table, or none (a small namespace).
LAYOUTS = ["table", "small"] if connection.vendor == "sqlite" else ["table"]


@pytest.fixture
def warm_key(agent):
    agent.get("/api/v1/memories")  # first use records last_used_at; later requests do not write
    return agent


@pytest.mark.parametrize("mode, vector_first, queries", [
    # key lookup (with its namespace), hydrate results, access-count update and the
    # recalls-per-day counter (both inline in tests; buffered in a server)
    ("vector", True, 4),
    # ... plus the keyword query and the candidates' session ids
    ("hybrid", True, 6),
    # the vector side still running when the keyword hits are known: their rows and the
    # sessions of those not read are read meanwhile (context.Rows), and after fusion the
    # sessions and rows of what is left: up to two more queries, off the critical path
    ("hybrid", False, 8),
])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("engine", ["auto", "sql"])
def test_recall_query_count_does_not_grow_with_k(warm_key, alpha, django_assert_max_num_queries,
                                                 django_assert_num_queries, monkeypatch, settings,
                                                 vector_side, mode, vector_first, queries, layout,
                                                 engine):
    """``layout`` "small" (SQLite): a namespace without its FTS5 table; its rows are ranked
    in memory (apps/memories/small_keywords.py). Its keyword stage is one statement, the
    change log's newest number for the namespace, as a table's is its query. With the
    ``sql`` engine the table's statement is tried first, which SQLite refuses when
    preparing it (no table; nothing is read): two. (The table layout's index is never
    built here: no warming thread in tests, so ``auto`` asks the table.)"""
    import time

    from django.utils import timezone

    from apps.memories import lexical
    from apps.memories.models import RecallDay

    small = layout == "small"
    settings.MEMORYWEB_SMALL_KEYWORD_LIMIT = 2000 if small else 0
    settings.MEMORYWEB_KEYWORD_ENGINE = engine
    if small and mode != "vector" and engine == "sql":
        queries += 1

    # The namespace's size is re-counted once a minute: keep that query out of the count.
    monkeypatch.setattr(lexical, "_totals", {alpha.pk: (30, time.monotonic())})
    # Today's recall counter row exists after the day's first recall (an insert then).
    RecallDay.objects.create(namespace=alpha, day=timezone.now().date(), count=0)
    warm_key.post("/api/v1/memories/batch", {"memories": [{"content": f"note {i}", "tags": ["t"]}
                                                          for i in range(30)]})
    if small:  # its in-memory index built once per process (one more statement, once)
        lexical.search(alpha.pk, lexical.build_query("note"), 1)
    vector_side(still_running=not vector_first)
    assert_queries = django_assert_num_queries if vector_first else django_assert_max_num_queries
    for k in (1, 25):
        with assert_queries(queries):
            response = warm_key.post("/api/v1/recall", {"query": "note", "k": k, "mode": mode})
        assert len(response.json()["results"]) == k


def test_list_query_count_does_not_grow_with_page(warm_key, django_assert_num_queries):
    warm_key.post("/api/v1/memories/batch", {"memories": [{"content": f"note {i}"} for i in range(30)]})
    for limit in (1, 30):
        # key lookup, count, page (namespace joined)
        with django_assert_num_queries(3):
            response = warm_key.get(f"/api/v1/memories?limit={limit}")
        assert len(response.json()["results"]) == limit


def test_batch_ingest_query_count_does_not_grow_with_size(warm_key, django_assert_max_num_queries):
    for size in (2, 200):
        items = [{"content": f"size {size} item {i}", "tags": ["a", "b"]} for i in range(size)]
        # key, savepoint, the namespace's archive state read in the write's transaction
        # (writes._writable_now), memories (in their own savepoint and release: the dedup
        # slots' conflict check), tags, outbox, the audit entry (head update and read,
        # entry, head hash, record index), release, outbox cleanup, backlog check; SQLite
        # splits a bulk insert by its bound-parameter limit, hence a margin. An N+1 would
        # be hundreds.
        with django_assert_max_num_queries(29):
            assert warm_key.post("/api/v1/memories/batch", {"memories": items}).status_code == 201
