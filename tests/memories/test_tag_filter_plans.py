"""Tag filters read the tag rows of the namespace searched, through (namespace, tag).

``MemoryTag`` has no index on the tag alone: ``pk IN (SELECT memory_id FROM memorytag
WHERE tag = ?)`` read the tag rows of every namespace (the whole table scanned) whatever
namespace was searched. Recall's SQL side and deletion by filter (``channels._filtered``)
and the dashboard's tag filter restrict the subquery to the namespace searched or listed:
a tag row's namespace is its memory's (writes.py; moves carry them, write_moves.py), so
the memories found are the same. The plan tests run the statements through ``EXPLAIN
QUERY PLAN`` (tests/memories/test_query_plans.py); the others hold on any database."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.core.roles import Role
from apps.memories.models import Memory
from apps.memories.services.deletion import delete_matching
from apps.tenancy.principal import Principal
from tests.helpers.people import store
from tests.memories.test_ingest_plans import _plans, _walks_namespace

sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's planner")

#: The (namespace, tag) index searched by both: the namespace's rows of the tag only.
_SEEKS_TAG = re.compile(r"USING (COVERING )?INDEX memorytag_ns_tag \(namespace_id=\? AND tag=\?\)")


def _tag_plans(run: Callable[[], object]) -> list[tuple[str, str]]:
    """(statement, plan) of each statement ``run`` ran that reads tag rows."""
    with CaptureQueriesContext(connection) as queries:
        run()
    statements = [q["sql"] for q in queries.captured_queries
                  if q["sql"].startswith(("SELECT", "DELETE")) and '"memories_memorytag"' in q["sql"]
                  and '"memories_memory"' in q["sql"]]
    assert statements, "no statement filtered memories by their tag rows"
    return list(zip(statements, _plans(statements), strict=True))


def _assert_seeks_tags(found: list[tuple[str, str]], *, memories_too: bool = False) -> None:
    """Every tag subquery searched (namespace, tag); no tag rows scanned. ``memories_too``:
    nor was the namespace's memory index walked for the memories the tag rows name
    (``channels.filter_start``)."""
    for sql, plan in found:
        assert _SEEKS_TAG.search(plan), (sql, plan)
        assert not re.search(r"SCAN (U\d+|memories_memorytag)\b", plan), (sql, plan)
        if memories_too:
            assert not _walks_namespace(plan), (sql, plan)
            assert not re.search(r"SCAN memories_memory\b", plan), (sql, plan)


def _store(caller, contents: list[str], **fields) -> list[str]:
    response = caller.post("/api/v1/memories/batch",
                           {"memories": [{"content": c, **fields} for c in contents]})
    assert response.status_code == 201, response.content
    return [r["id"] for r in response.json()["results"]]


def _recall(caller, filters: dict, mode: str = "lexical") -> list[str]:
    response = caller.post("/api/v1/recall", {"query": "deploy note", "k": 20, "mode": mode,
                                              "filters": filters})
    assert response.status_code == 200, response.content
    return sorted(r["id"] for r in response.json()["results"])


def _system() -> Principal:
    return Principal(label="system:test", agent_id="root", role=Role.SYSTEM)


@sqlite_only
@pytest.mark.parametrize("filters", [{"tags": ["ops"]}, {"tags_any": ["ops", "infra"]},
                                     {"tags": ["ops"], "tags_any": ["ops", "infra"]}])
def test_a_tag_filtered_recall_reads_its_namespaces_tag_rows(agent, outsider, alpha, settings,
                                                             filters, keyword_tables):
    settings.MEMORYWEB_KEYWORD_ENGINE = "sql"
    _store(outsider, [f"deploy note of beta {i}" for i in range(4)], tags=["ops"])
    mine = _store(agent, ["deploy note tagged ops"], tags=["ops"])
    _store(agent, ["deploy note untagged"])
    found: list[str] = []
    _assert_seeks_tags(_tag_plans(lambda: found.extend(_recall(agent, filters))), memories_too=True)
    assert found == mine


@sqlite_only
def test_deleting_by_tag_reads_the_namespaces_tag_rows(agent, outsider, alpha):
    _store(outsider, [f"deploy note of beta {i}" for i in range(4)], tags=["ops"])
    _store(agent, ["deploy note tagged ops", "another tagged ops"], tags=["ops"])
    deleted: list[int] = []
    _assert_seeks_tags(_tag_plans(lambda: deleted.append(
        delete_matching(_system(), "alpha", {"tags_any": ["ops"]}))), memories_too=True)
    assert deleted == [2]


@pytest.mark.parametrize("mode", ["vector", "lexical", "hybrid"])
@pytest.mark.parametrize("engine", ["sql", "memory"])
def test_a_tag_filter_never_finds_another_namespaces_memories(agent, outsider, alpha, beta,
                                                              settings, mode, engine):
    """The same tag in beta: alpha's tag-filtered recall neither returns nor deletes
    beta's memories (nor counts them: delete_matching's count is alpha's)."""
    settings.MEMORYWEB_KEYWORD_ENGINE = engine
    theirs = _store(outsider, ["deploy note of beta", "deploy note of beta again"], tags=["ops"])
    mine = _store(agent, ["deploy note of alpha"], tags=["ops", "infra"])
    _store(agent, ["deploy note of alpha untagged"])
    assert _recall(agent, {"tags": ["ops"]}, mode) == mine
    assert _recall(agent, {"tags_any": ["ops", "nothing"]}, mode) == mine
    assert _recall(outsider, {"tags": ["ops"]}, mode) == sorted(theirs)
    assert _recall(outsider, {"tags": ["ops", "infra"]}, mode) == []  # infra: alpha's only
    assert delete_matching(_system(), "alpha", {"tags": ["ops"]}) == 1
    assert Memory.objects.filter(pk__in=theirs).count() == 2
    assert not Memory.objects.filter(pk__in=mine).exists()
    assert _recall(outsider, {"tags_any": ["ops"]}, mode) == sorted(theirs)


# --- the dashboard's tag filter ---------------------------------------------------------

LIST = "/admin/memories/memory/"


@pytest.fixture
def memories(alpha, beta):
    """As tests/dashboard/conftest.py's: alpha's and beta's memory tagged ``ops``."""
    return {"alpha": [store(alpha, "The deploy key rotates every ninety days.", tags=["ops"]),
                      store(alpha, "Lunch is at noon on Fridays.", agent_id="agent-2")],
            "beta": [store(beta, "Beta's deploy secret lives in the vault.", tags=["ops"])]}


@sqlite_only
def test_the_dashboards_tag_filter_reads_the_listed_namespaces_tag_rows(alice, root, memories,
                                                                         alpha):
    for person, query in ((alice, {"tag": "ops"}), (root, {"tag": "ops", "namespace": alpha.pk})):
        found = _tag_plans(lambda: person.get(LIST, query))  # noqa: B023 -- called at once
        _assert_seeks_tags(found)


def test_the_dashboards_tag_filter_lists_the_same_memories(alice, bob, root, memories, alpha, beta):
    """Alpha's and beta's memories tagged ``ops``: each person sees what they saw."""
    def listed(person, query: dict) -> set[str]:
        page = person.get(LIST, query)
        assert page.status_code == 200
        return {str(m.pk) for m in page.context["cl"].result_list}

    alpha_ops, beta_ops = str(memories["alpha"][0].pk), str(memories["beta"][0].pk)
    assert listed(alice, {"tag": "ops"}) == {alpha_ops}
    assert listed(bob, {"tag": "ops"}) == {beta_ops}
    assert listed(root, {"tag": "ops"}) == {alpha_ops, beta_ops}
    assert listed(root, {"tag": "ops", "namespace": alpha.pk}) == {alpha_ops}
    assert listed(root, {"tag": "ops", "namespace": beta.pk}) == {beta_ops}
    assert listed(alice, {"tag": "ops", "namespace": beta.pk}) == set()
    assert listed(root, {"tag": "ops", "namespace": "abc"}) == set()
