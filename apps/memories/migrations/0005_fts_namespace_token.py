"""SQLite: the namespace becomes an indexed token of the FTS5 table.

0002 kept the namespace in an UNINDEXED column, so a keyword query scored the matches
of every tenant and only then dropped the other namespaces' rows: the cost grew with
the whole server, not with the namespace. With the namespace as a token (``n<id>`` in
column ``ns``) the query is ``ns : "n<id>" AND content : (terms)`` and FTS5 walks only
that namespace's postings. Measured on 10 namespaces x 10,000 memories: 40.5 ms ->
9.7 ms per query, same results (docs/recall.md). PostgreSQL already filters by its
namespace index before ranking: nothing changes there.
"""

from django.db import migrations

FORWARD = [
    "DROP TRIGGER IF EXISTS memories_fts_au",
    "DROP TRIGGER IF EXISTS memories_fts_ad",
    "DROP TRIGGER IF EXISTS memories_fts_ai",
    "DROP TABLE IF EXISTS memories_fts",
    """CREATE VIRTUAL TABLE memories_fts USING fts5(
        memory_id UNINDEXED, ns, content,
        tokenize = 'porter unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER memories_fts_ai AFTER INSERT ON memories_memory BEGIN
        INSERT INTO memories_fts(memory_id, ns, content)
        VALUES (new.id, 'n' || new.namespace_id, new.content);
    END""",
    """CREATE TRIGGER memories_fts_ad AFTER DELETE ON memories_memory BEGIN
        DELETE FROM memories_fts WHERE memory_id = old.id;
    END""",
    """CREATE TRIGGER memories_fts_au AFTER UPDATE OF content, namespace_id ON memories_memory BEGIN
        DELETE FROM memories_fts WHERE memory_id = old.id;
        INSERT INTO memories_fts(memory_id, ns, content)
        VALUES (new.id, 'n' || new.namespace_id, new.content);
    END""",
    "INSERT INTO memories_fts(memory_id, ns, content) "
    "SELECT id, 'n' || namespace_id, content FROM memories_memory",
]


def _sqlite_only(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "sqlite":
            for sql in statements:
                schema_editor.execute(sql)

    return run


def _backward(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    from importlib import import_module

    previous = import_module("apps.memories.migrations.0002_lexical_index")
    for sql in previous.SQLITE_BACKWARD + previous.SQLITE_FORWARD:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("memories", "0004_occurred_at_near_duplicate_of")]

    operations = [migrations.RunPython(_sqlite_only(FORWARD), _backward)]
