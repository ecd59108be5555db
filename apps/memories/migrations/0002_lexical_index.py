"""The lexical index, kept by the database itself so it is always consistent.

SQLite: an FTS5 table (porter stemming) maintained by triggers on memories_memory.
PostgreSQL: a generated tsvector column with a GIN index. Either way every write path
(services, cascade deletes of a namespace, raw SQL) updates it in the same transaction.
"""

from django.db import migrations

SQLITE_FORWARD = [
    """CREATE VIRTUAL TABLE memories_fts USING fts5(
        memory_id UNINDEXED, namespace_id UNINDEXED, content,
        tokenize = 'porter unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER memories_fts_ai AFTER INSERT ON memories_memory BEGIN
        INSERT INTO memories_fts(memory_id, namespace_id, content)
        VALUES (new.id, new.namespace_id, new.content);
    END""",
    """CREATE TRIGGER memories_fts_ad AFTER DELETE ON memories_memory BEGIN
        DELETE FROM memories_fts WHERE memory_id = old.id;
    END""",
    """CREATE TRIGGER memories_fts_au AFTER UPDATE OF content, namespace_id ON memories_memory BEGIN
        DELETE FROM memories_fts WHERE memory_id = old.id;
        INSERT INTO memories_fts(memory_id, namespace_id, content)
        VALUES (new.id, new.namespace_id, new.content);
    END""",
    "INSERT INTO memories_fts(memory_id, namespace_id, content) "
    "SELECT id, namespace_id, content FROM memories_memory",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS memories_fts_au",
    "DROP TRIGGER IF EXISTS memories_fts_ad",
    "DROP TRIGGER IF EXISTS memories_fts_ai",
    "DROP TABLE IF EXISTS memories_fts",
]
POSTGRES_FORWARD = [
    "ALTER TABLE memories_memory ADD COLUMN search tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english', content)) STORED",
    "CREATE INDEX memories_memory_search ON memories_memory USING GIN (search)",
]
POSTGRES_BACKWARD = [
    "DROP INDEX IF EXISTS memories_memory_search",
    "ALTER TABLE memories_memory DROP COLUMN IF EXISTS search",
]


def _run(statements: dict):
    def run(apps, schema_editor):
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("memories", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
        )
    ]
