"""Deletes, edits, merges, erasures and filtered recall seek what they need instead of
walking the namespace.

SQLite has no statistics here (no ANALYZE): given ``namespace_id = ?`` beside a
selective condition (ids, ``context_memory_id``, ``superseded_by``), its planner searched
a namespace index by the namespace alone (every memory of it read) rather than the
primary key or the foreign key's index, and ``Memory``'s default ordering (-created_at)
pulled it towards the namespace's created_at index. The namespace is now checked on the
rows found (``MemoryQuerySet.in_namespace_checked``), or the ids are read by primary key
and their namespace checked in Python. Each test runs the statements a request ran
through ``EXPLAIN QUERY PLAN`` (tests/memories/test_ingest_plans.py does so for ingest)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.memories import blind_tokens, indexing, keyword_index_log, writes
from apps.memories.models import IndexOutbox, Memory
from apps.tenancy.principal import Principal
from tests.memories.test_ingest_plans import _plans, _walks_namespace

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's planner")

#: A condition that finds few rows: what the planner should seek, the namespace checked.
_SELECTIVE = re.compile(
    r'"memories_memory"\."(id|context_memory_id|superseded_by_id)" (IN \(|= )'
    r'|"memories_memory"\."(content_hash|agent_id)" = ')


def _statements(run: Callable[[], object]) -> list[str]:
    """The SELECT/UPDATE/DELETE statements on memories_memory with a selective condition
    that ``run`` ran."""
    with CaptureQueriesContext(connection) as queries:
        run()
    return [q["sql"] for q in queries.captured_queries
            if q["sql"].startswith(("SELECT", "UPDATE", "DELETE"))
            and '"memories_memory"' in q["sql"] and _SELECTIVE.search(q["sql"])]


def _assert_seeks(statements: list[str], *expected: str) -> None:
    """Each statement's plan seeks; ``expected``: fragments some statement must hold (the
    lookups this test is about ran at all)."""
    for fragment in expected:
        assert any(fragment in sql for sql in statements), f"no statement with {fragment}"
    walked = [(sql, plan) for sql, plan in zip(statements, _plans(statements), strict=True)
              if _walks_namespace(plan)]
    assert not walked, walked


def _store(caller, contents: list[str], **fields) -> list[str]:
    response = caller.post("/api/v1/memories/batch",
                           {"memories": [{"content": c, **fields} for c in contents]})
    assert response.status_code == 201, response.content
    return [r["id"] for r in response.json()["results"]]


def test_deleting_one_memory_seeks_its_dependents(agent, team_admin, alpha):
    _store(agent, [f"filler {i}" for i in range(4)])
    (doomed,) = _store(agent, ["the memory to delete"])

    def delete():
        response = team_admin.delete(f"/api/v1/memories/{doomed}")
        assert response.status_code == 204, response.content

    _assert_seeks(_statements(delete), '"context_memory_id" IN', '"superseded_by_id" IN')
    assert not Memory.objects.filter(pk=doomed).exists()


def test_deleting_several_memories_reads_them_by_primary_key(agent, team_admin, alpha):
    _store(agent, [f"filler {i}" for i in range(4)])
    doomed = _store(agent, ["first to go", "second to go", "third to go"])
    kept = _store(agent, ["stays"])

    def forget():
        response = team_admin.client.delete("/v1/forget", {"ids": doomed}, format="json")
        assert response.status_code == 200 and response.json() == {"deleted": 3}, response.content

    statements = _statements(forget)
    _assert_seeks(statements, '"memories_memory"."id" IN', '"context_memory_id" IN',
                  '"superseded_by_id" IN')
    assert not Memory.objects.filter(pk__in=doomed).exists()
    assert Memory.objects.filter(pk__in=kept).count() == 1


def test_deleting_what_another_namespace_holds_is_still_refused(team_admin, outsider, alpha):
    """The namespace checked in Python sees what for_principal saw: all or nothing."""
    mine = _store(team_admin, ["mine"])
    theirs = _store(outsider, ["theirs"])
    response = team_admin.client.delete("/v1/forget", {"ids": mine + theirs}, format="json")
    assert response.status_code == 404, response.content
    assert Memory.objects.filter(pk__in=mine + theirs).count() == 2


def test_a_content_edit_seeks_its_dependents(agent, team_admin, alpha):
    _store(agent, [f"filler {i}" for i in range(4)])
    (edited,) = _store(agent, ["before the edit"])

    def edit():
        response = team_admin.patch(f"/api/v1/memories/{edited}", {"content": "after the edit"})
        assert response.status_code == 200, response.content

    _assert_seeks(_statements(edit), '"context_memory_id" IN')


def test_a_batch_edit_reads_its_memories_by_primary_key(agent, team_admin, outsider, alpha):
    from apps.memories import services

    _store(agent, [f"filler {i}" for i in range(4)])
    ids = _store(agent, ["one", "two", "three"])
    theirs = _store(outsider, ["not theirs to change"])
    principal = Principal.for_key(team_admin.key)
    result = None

    def edit():
        nonlocal result
        result = services.set_kind_many(principal, [*ids, *theirs], "procedure")

    _assert_seeks(_statements(edit), '"memories_memory"."id" IN')
    assert sorted(str(m.pk) for m in result.updated) == sorted(ids)
    assert result.errors == [(theirs[0], "memory not found.")]


def test_the_learning_check_seeks_the_hash(agent, alpha):
    from apps.gateway.learning import _existing_memory

    _store(agent, [f"filler {i}" for i in range(4)])
    first = _store(agent, ["Alice's favourite editor is vim."])
    found = None

    def check():
        nonlocal found
        found = _existing_memory(alpha, "Alice's favourite editor is vim.")

    _assert_seeks(_statements(check), '"content_hash" =')
    assert found is not None and str(found.pk) == first[0]


def test_a_filtered_recall_seeks_the_filter(agent, team_admin, alpha, settings, keyword_tables):
    settings.MEMORYWEB_KEYWORD_ENGINE = "sql"
    _store(agent, [f"deploy note {i}" for i in range(4)])
    _store(team_admin, ["deploy note by the admin"])

    def recall():
        response = agent.post("/api/v1/recall", {"query": "deploy note", "k": 5,
                                                 "filters": {"agent_id": "admin-1"}})
        assert response.status_code == 200, response.content
        assert [r["agent_id"] for r in response.json()["results"]] == ["admin-1"]

    _assert_seeks(_statements(recall), '"memories_memory"."agent_id" =')


def test_merge_and_unmerge_seek_the_members(agent, team_admin, alpha):
    _store(agent, [f"filler {i}" for i in range(4)])
    ids = _store(agent, ["member one", "member two", "the survivor"])
    members = list(Memory.objects.filter(pk__in=ids[:2]))
    survivor = Memory.objects.get(pk=ids[2])
    actor = Principal.for_key(team_admin.key)

    def merge():
        with writes.atomic() as write:
            assert write.supersede(alpha, members, survivor, similarity={}, actor=actor) == 2

    def unmerge():
        with writes.atomic() as write:
            assert sorted(map(str, write.release(alpha, survivor))) == sorted(ids[:2])

    _assert_seeks(_statements(merge), '"memories_memory"."id" IN')
    _assert_seeks(_statements(unmerge), '"superseded_by_id" =')


def test_the_outbox_drain_reads_its_memories_by_primary_key(agent, alpha):
    _store(agent, [f"filler {i}" for i in range(4)])
    ids = _store(agent, ["replayed one", "replayed two", "replayed three"])
    IndexOutbox.objects.all().delete()
    IndexOutbox.objects.bulk_create([IndexOutbox(namespace=alpha, memory_id=pk,
                                                 op=IndexOutbox.Op.METADATA) for pk in ids])
    statements = _statements(lambda: indexing.drain_outbox(namespace=alpha))
    _assert_seeks(statements, '"memories_memory"."id" IN')
    assert not IndexOutbox.objects.exists()


def test_the_keyword_engine_reads_its_texts_by_primary_key(agent, alpha):
    _store(agent, [f"filler {i}" for i in range(4)])
    ids = _store(agent, ["text one", "text two", "text three"])
    texts = []
    hexes = [Memory._meta.pk.to_python(i).hex for i in ids]
    statements = _statements(lambda: texts.extend(keyword_index_log._texts(alpha.pk, hexes)))
    _assert_seeks(statements, '"memories_memory"."id" IN')
    assert sorted(t[1] for t in texts) == ["text one", "text three", "text two"]


def test_an_encrypted_namespace_reads_its_plaintexts_by_primary_key(vault_agent, vault):
    _store(vault_agent, [f"filler {i}" for i in range(4)])
    ids = _store(vault_agent, ["secret one", "secret two", "secret three"])
    texts = []
    statements = _statements(lambda: texts.extend(blind_tokens.plaintexts(vault.pk, ids)))
    _assert_seeks(statements, '"memories_memory"."id" IN')
    assert sorted(t[1] for t in texts) == ["secret one", "secret three", "secret two"]


def test_an_erasure_reads_its_memories_by_primary_key(agent, alpha):
    from apps.gateway import learning_stores

    _store(agent, [f"filler {i}" for i in range(4)])
    ids = _store(agent, ["erased one", "erased two"], session_id="s-erased")
    statements = _statements(lambda: learning_stores.facts_erase(alpha, ids))
    _assert_seeks(statements, '"memories_memory"."id" IN')
