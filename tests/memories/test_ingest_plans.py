"""Batch ingest's lookups seek what they need instead of walking the namespace.

SQLite has no statistics here (no ANALYZE), and ``Memory``'s default ordering
(``-created_at``) made its planner pick the namespace's created_at index for the exact
duplicate lookup and the near-duplicate targets: every memory of the namespace read per
batch, so ingest slowed as a namespace grew (bench/results/recall_latency_100k.json).
Each test runs the statement the ingest ran through ``EXPLAIN QUERY PLAN``."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.memories.test_near_duplicates import NEAR, ORIGINAL

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's planner")


def _plans(statements: list[str]) -> list[str]:
    plans = []
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            plans.append(" / ".join(row[3] for row in cursor.fetchall()))
    return plans


def _walks_namespace(plan: str) -> bool:
    """An index searched by the namespace alone: every memory of it read."""
    return re.search(r"USING (COVERING )?INDEX \S+ \(namespace_id=\?\)", plan) is not None


def _ingest(agent, contents: list[str]) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = agent.post("/api/v1/memories/batch",
                              {"memories": [{"content": c} for c in contents]})
    assert response.status_code == 201, response.content
    return [q["sql"] for q in queries.captured_queries]


def test_the_duplicate_lookup_seeks_the_hashes(agent, alpha):
    agent.post("/api/v1/memories/batch", {"memories": [{"content": f"fact {i}"} for i in range(5)]})
    statements = _ingest(agent, ["fact 1", "something new"])
    lookups = [sql for sql in statements
               if sql.startswith("SELECT") and '"content_hash" IN' in sql and "memories_memory" in sql]
    assert lookups, "no duplicate lookup ran"
    for plan in _plans(lookups):
        assert "memory_ns_hash" in plan and not _walks_namespace(plan), plan


#: A second pair as close as ORIGINAL and NEAR: with two targets or more the planner
#: preferred the namespace's index to the primary key (one id is an equality).
TEA, TEA_NEAR = "Alice likes green tea.", "alice likes green tea"


def test_near_duplicate_targets_are_read_by_primary_key(agent, alpha):
    agent.post("/api/v1/memories/batch", {"memories": [{"content": ORIGINAL}, {"content": TEA}]})
    statements = _ingest(agent, [NEAR, TEA_NEAR])
    by_id = [sql for sql in statements if sql.startswith("SELECT") and "memories_memory" in sql
             and '"memories_memory"."id" IN' in sql]
    assert by_id, "no near-duplicate target was read"
    for plan in _plans(by_id):
        assert not _walks_namespace(plan), plan
    answered = agent.get("/api/v1/memories?limit=10").json()
    linked = [m for m in answered["results"] if m.get("near_duplicate_of")]
    assert len(linked) == 2, answered  # both found their original


def test_the_keyword_rows_are_copied_by_primary_key(agent, alpha, keyword_tables):
    """lexical.add's INSERT ... SELECT narrows by the batch's ids: the namespace is a
    check, not the index walked (it was, from three ids on). The namespace's first write
    made its table, filled from the whole namespace, once (small_keywords.py)."""
    _ingest(agent, ["the write that makes the table"])
    statements = _ingest(agent, [f"keyword row {i}" for i in range(5)])
    copies = [sql.split(" SELECT ", 1)[1] for sql in statements
              if sql.startswith("INSERT INTO") and "SELECT m.id, m.content" in sql]
    assert copies, "no keyword rows were copied"
    for plan in _plans(["SELECT " + sql for sql in copies]):
        assert not _walks_namespace(plan), plan
