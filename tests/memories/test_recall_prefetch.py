"""Hybrid recall reads the keyword hits' rows while the vector side still runs
(``context.Rows``, ``channels._search_channels``' ``prefetch``), and the result is the
same as reading them after fusion.

The order of the two channels is made certain by the ``vector_side`` fixture
(tests/memories/vector_order.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.memories.models import Memory

TABLE = Memory._meta.db_table


@pytest.fixture
def notes(agent, alpha):
    """Memories that both channels find, in sessions, a few of them dropped by _hydrate."""
    items = [{"content": f"deploy note {i}: the rollout of service {i} went fine",
              "session_id": f"s{i % 4}"} for i in range(40)]
    response = agent.post("/api/v1/memories/batch", {"memories": items})
    assert response.status_code == 201, response.content
    ids = [m["id"] for m in response.json()["results"]]
    Memory.objects.filter(pk__in=ids[:3]).update(expires_at=timezone.now() - timedelta(minutes=1))
    return ids


def _reads_rows(sql: str) -> bool:
    """A read of whole memory rows by primary key (``apps.core.rows_by_pk``, which recall
    reads its rows with)."""
    return sql.startswith('SELECT "id", "namespace_id", ') and f'FROM "{TABLE}" WHERE "id" IN (' in sql


def _sessions(sql: str) -> bool:
    """``context._sessions_of``'s read of sessions by primary key."""
    return sql.startswith("SELECT id, namespace_id, session_id")


def _rows_read(log: list[str]):
    def wrapper(execute, sql, params, many, context):
        if _reads_rows(sql):
            log.append("memory rows read")
        return execute(sql, params, many, context)
    return connection.execute_wrapper(wrapper)


def test_the_keyword_hits_rows_are_read_while_the_vector_side_runs(agent, notes, vector_side):
    log = vector_side(still_running=True)
    with _rows_read(log):
        response = agent.post("/api/v1/recall", {"query": "deploy rollout service", "k": 5,
                                                 "mode": "hybrid"})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 5
    assert "vector side runs" in log
    assert "memory rows read" in log[:log.index("vector side runs")], log
    stages = {part.split(";")[0].strip() for part in response["Server-Timing"].split(",")}
    assert "prefetch" in stages


def test_no_prefetch_when_the_vector_side_has_answered(agent, notes, vector_side):
    log = vector_side(still_running=False)
    response = agent.post("/api/v1/recall", {"query": "deploy rollout service", "k": 5,
                                             "mode": "hybrid"})
    stages = {part.split(";")[0].strip() for part in response["Server-Timing"].split(",")}
    assert "prefetch" not in stages
    assert "vector side runs" not in log


@pytest.mark.parametrize("body", [
    {"query": "deploy rollout service", "k": 5},
    {"query": "deploy rollout service", "k": 25, "explain": True},
    {"query": "note 7 went fine", "k": 10, "filters": {"session_id": "s3"}},
    {"query": "rollout", "k": 40},
])
def test_the_same_results_whichever_side_answers_first(agent, notes, vector_side, body, alpha):
    """Same ids, order, scores and channel parts; expired memories still left out."""
    answers = []
    for still_running in (False, True):
        vector_side(still_running)
        response = agent.post("/api/v1/recall", {**body, "mode": "hybrid"})
        assert response.status_code == 200, response.content
        # a recall counts as a use (the strength prior): undo it for the second one
        Memory.objects.filter(pk__in=notes).update(access_count=0, last_recalled_at=None)
        # explain's parts but strength's, whose age part moves with the clock
        answers.append([(hit["id"], hit["score"], {part: value for part, value in
                                                   (hit.get("explain") or {}).items()
                                                   if part != "strength"})
                        for hit in response.json()["results"]])
    assert answers[0] == answers[1]
    assert not {hit[0] for hit in answers[1]} & set(notes[:3])
    assert answers[1]


def test_no_memory_row_is_read_twice(agent, notes, vector_side):
    """Rows and sessions the prefetch read are not read again after fusion."""
    vector_side(still_running=True)
    statements: list[tuple[str, list]] = []

    def wrapper(execute, sql, params, many, context):
        statements.append((sql, list(params or ())))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        response = agent.post("/api/v1/recall", {"query": "deploy rollout service", "k": 25,
                                                 "mode": "hybrid"})
    assert response.status_code == 200
    rows: list[str] = []
    sessions: list[str] = []
    for sql, params in statements:
        if _reads_rows(sql):
            rows += params
        elif _sessions(sql):
            assert not set(params) & set(rows)  # a row read gives its session too
            sessions += params
    assert len(rows) >= 25 and len(rows) == len(set(rows))
    assert len(sessions) == len(set(sessions))


def test_a_widened_search_reads_its_rows_again(agent, vector_side, monkeypatch):
    """Most keyword hits expired: the search widens, and the rows the first pass read
    are read again (one deleted in between must not be served from the first read)."""
    from apps.memories.recall.context import Rows

    items = [{"content": f"archive entry {i} about the harbour crane"} for i in range(130)]
    response = agent.post("/api/v1/memories/batch", {"memories": items})
    assert response.status_code == 201, response.content
    ids = [m["id"] for m in response.json()["results"]]
    Memory.objects.filter(pk__in=ids[:120]).update(expires_at=timezone.now() - timedelta(minutes=1))
    forgotten: list[int] = []
    original = Rows.forget_rows

    def counted(self):
        forgotten.append(len(self.rows))
        original(self)

    monkeypatch.setattr(Rows, "forget_rows", counted)
    vector_side(still_running=True)
    found = agent.post("/api/v1/recall", {"query": "harbour crane archive", "k": 10, "mode": "hybrid"})
    assert found.status_code == 200
    assert sorted(hit["id"] for hit in found.json()["results"]) == sorted(ids[120:])
    assert forgotten and forgotten[0] > 0
