"""SQLite: one FTS5 table per namespace instead of one for the whole server.

BM25's statistics (row count, document frequency of each term, average length) are
table-wide. With every tenant in one table (0005) they included other tenants'
memories, so the order and the raw scores a caller saw in ``explain`` moved with words
stored in other namespaces: a caller could test whether a word existed elsewhere, and
read the server's memory count; common-term pruning (0006) leaked the same way.
Each namespace now has ``memories_fts_<id>`` and its vocabulary ``memories_fts_<id>_vocab``,
kept by the services inside the write's transaction (``apps.memories.lexical``), not by
triggers: one trigger per namespace makes every insert evaluate one WHEN per namespace
(measured at 1,000 namespaces: a 500-row ingest 7.7 -> 31 ms, one row 0.15 -> 1.0 ms,
and a new connection 57 -> 130 ms to prepare its first insert; docs/recall.md).

The statements are written out here, not imported, so later changes to the module do
not change what this migration does. PostgreSQL ranks without corpus statistics:
nothing changes there.
"""

import re

from django.db import migrations

TOKENIZE = "tokenize = 'porter unicode61 remove_diacritics 2'"
OLD_TRIGGERS = ("memories_fts_au", "memories_fts_ad", "memories_fts_ai")
PER_NAMESPACE = re.compile(r"memories_fts_(\d+)")


def _namespace_tables(schema_editor) -> list[str]:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE %s",
                       ["memories_fts_%"])
        return [name for (name,) in cursor.fetchall() if PER_NAMESPACE.fullmatch(name)]


def _forward(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT namespace_id FROM memories_memory")
        namespace_ids = [row[0] for row in cursor.fetchall()]
    for namespace_id in namespace_ids:
        table = f"memories_fts_{int(namespace_id)}"
        schema_editor.execute(f"CREATE VIRTUAL TABLE {table} USING fts5("
                              f"memory_id UNINDEXED, content, {TOKENIZE})")
        schema_editor.execute(f"CREATE VIRTUAL TABLE {table}_vocab USING fts5vocab({table}, 'row')")
        schema_editor.execute(f"INSERT INTO {table}(memory_id, content) "
                              "SELECT id, content FROM memories_memory WHERE namespace_id = %s",
                              [namespace_id])
    for trigger in OLD_TRIGGERS:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    schema_editor.execute("DROP TABLE IF EXISTS memories_fts_vocab")
    schema_editor.execute("DROP TABLE IF EXISTS memories_fts")


def _backward(apps, schema_editor):
    """Back to 0006: the shared table, its triggers (which refill it) and its vocabulary."""
    if schema_editor.connection.vendor != "sqlite":
        return
    from importlib import import_module

    for table in _namespace_tables(schema_editor):
        schema_editor.execute(f"DROP TABLE IF EXISTS {table}_vocab")
        schema_editor.execute(f"DROP TABLE IF EXISTS {table}")
    shared = import_module("apps.memories.migrations.0005_fts_namespace_token")
    for sql in shared.FORWARD:
        schema_editor.execute(sql)
    schema_editor.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts_vocab USING fts5vocab(memories_fts, 'row')")


class Migration(migrations.Migration):
    dependencies = [("memories", "0006_fts_vocabulary")]

    operations = [migrations.RunPython(_forward, _backward)]
