"""SQLite's per-namespace keyword tables: migrated from the shared one and back, dropped
with their namespace by any path, rebuilt by ``manage.py reindex``."""

from __future__ import annotations

import io
import uuid

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from apps.memories import lexical
from apps.memories.models import Memory, content_hash
from apps.tenancy.models import Namespace

pytestmark = [pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's FTS5 tables only"),
              pytest.mark.usefixtures("keyword_tables")]  # about the FTS5 tables


def _search(namespace_id: int, text: str, context_weight: float | None = None) -> list[uuid.UUID]:
    """``context_weight=0``: the memories' own words only, a query tables from before the
    context column (0014) answer too."""
    return [pk for pk, _ in lexical.search(namespace_id, lexical.build_query(text), 10,
                                           context_weight=context_weight)]


def _tables() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE name LIKE %s", ["memories_fts%"])
        return {row[0] for row in cursor.fetchall()}


def _raw_memory(namespace: Namespace, content: str) -> Memory:
    """A memory written around the services (as a raw ORM job would), by the model as it
    was at 0006 (later migrations add columns that table does not have yet)."""
    now = timezone.now()
    model = MigrationExecutor(connection).loader.project_state(
        ("memories", "0006_fts_vocabulary")).apps.get_model("memories", "Memory")
    return model.objects.create(namespace_id=namespace.pk, content=content, agent_id="job",
                                content_hash=content_hash(content), created_at=now, updated_at=now)


def _migrate(target: tuple[str, str] | None) -> None:
    """Migrate memories to ``target``; None: every app to its latest migration (as the suite
    expects: going back in memories also unapplies the apps that depend on it, timeline)."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target] if target else executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_migration_splits_the_shared_table_and_back():
    alpha, beta = Namespace.objects.create(slug="alpha"), Namespace.objects.create(slug="beta")
    _migrate(("memories", "0006_fts_vocabulary"))
    try:  # the shared table's triggers index these as they are written
        first = _raw_memory(alpha, "the walrus census")
        second = _raw_memory(beta, "the walrus migration")
        _migrate(("memories", "0007_fts_per_namespace"))
        assert "memories_fts" not in _tables()
        assert _search(alpha.pk, "walrus", 0) == [first.pk] and _search(beta.pk, "walrus", 0) == [second.pk]
        _migrate(("memories", "0006_fts_vocabulary"))
        assert lexical.fts_table(alpha.pk) not in _tables()
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM memories_fts WHERE memories_fts MATCH 'walrus'")
            assert cursor.fetchone()[0] == 2
    finally:
        _migrate(None)


@pytest.mark.django_db(transaction=True)
def test_migration_adds_the_context_columns_and_back():
    alpha = Namespace.objects.create(slug="alpha")
    _migrate(("memories", "0007_fts_per_namespace"))
    try:
        first = _raw_memory(alpha, "the walrus census")
        with connection.cursor() as cursor:  # as the services of 0007..0013 indexed it
            cursor.execute(f"CREATE VIRTUAL TABLE {lexical.fts_table(alpha.pk)} USING fts5("
                           "memory_id UNINDEXED, content, tokenize = 'porter unicode61')")
            cursor.execute(f"INSERT INTO {lexical.fts_table(alpha.pk)}(memory_id, content) "
                           "SELECT id, content FROM memories_memory")
        _migrate(("memories", "0013_bulk_job"))
        _migrate(("memories", "0014_context_memory"))
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT memory_id, context, context_id FROM {lexical.fts_table(alpha.pk)}")
            assert cursor.fetchall() == [(first.pk.hex, "", None)]
        assert _search(alpha.pk, "walrus") == [first.pk]
        _migrate(("memories", "0013_bulk_job"))
        assert _search(alpha.pk, "walrus", 0) == [first.pk]
    finally:
        _migrate(None)


def test_namespace_deleted_through_the_orm_takes_its_table(agent, alpha, beta, outsider):
    agent.post("/api/v1/memories", {"content": "penguin colony census"})
    outsider.post("/api/v1/memories", {"content": "penguin parade"})
    table = lexical.fts_table(alpha.pk)
    assert {table, f"{table}_vocab"} <= _tables()
    Namespace.objects.filter(pk=alpha.pk).delete()  # no service involved
    assert not {name for name in _tables() if name.startswith(table)}
    assert len(_search(beta.pk, "penguin")) == 1


def test_flush_leaves_no_keyword_table_behind(agent, alpha):
    agent.post("/api/v1/memories", {"content": "penguin colony census"})
    call_command("flush", interactive=False, verbosity=0)
    assert not {name for name in _tables() if name.startswith("memories_fts_")}


def test_a_namespace_without_memories_has_no_table_and_finds_nothing(alpha, agent):
    assert lexical.fts_table(alpha.pk) not in _tables()
    assert _search(alpha.pk, "anything") == []
    response = agent.post("/api/v1/recall", {"query": "anything", "mode": "hybrid"})
    assert response.status_code == 200 and response.json()["results"] == []


def test_reindex_rebuilds_from_the_memories_table(agent, alpha):
    agent.post("/api/v1/memories", {"content": "the heron nests by the lake"})
    raw = _raw_memory(alpha, "a heron was ringed")  # not indexed: it bypassed the services
    assert raw.pk not in _search(alpha.pk, "heron")
    with connection.cursor() as cursor:  # an orphan table, as a raw SQL delete would leave
        cursor.execute("CREATE VIRTUAL TABLE memories_fts_999999 USING fts5(memory_id UNINDEXED, content)")
    call_command("reindex", stdout=io.StringIO())
    assert raw.pk in _search(alpha.pk, "heron") and len(_search(alpha.pk, "heron")) == 2
    assert "memories_fts_999999" not in _tables()


def test_an_edit_reindexes_only_when_the_content_changes(agent, team_admin, alpha):
    memory = agent.post("/api/v1/memories", {"content": "the otter holt"}).json()
    team_admin.patch(f"/api/v1/memories/{memory['id']}", {"tags": ["river"]})
    assert [str(pk) for pk in _search(alpha.pk, "otter")] == [memory["id"]]
    team_admin.patch(f"/api/v1/memories/{memory['id']}", {"content": "the badger sett"})
    assert _search(alpha.pk, "otter") == []
    assert [str(pk) for pk in _search(alpha.pk, "badger")] == [memory["id"]]
