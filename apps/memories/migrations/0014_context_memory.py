"""Conversation context (apps/memories/context.py): a memory may be indexed with the one
before it in its session.

- ``context_memory``: which memory that is (SET NULL when it is deleted; the write path
  re-indexes the memory then).
- SQLite: every namespace's FTS5 table gets a ``context`` column (the previous turn's
  words, weighted apart by bm25) and ``context_id`` (unindexed: whose words they are, so
  erasure can check none are left). FTS5 cannot add columns, so each table is rebuilt;
  existing memories have no context yet, so their rows are as before.
- PostgreSQL: ``context_search``, a tsvector of the context's words (not generated: it
  comes from another row), with its GIN index.
- The session index gains ``created_at``: ingest asks a session for its latest memory.

The statements are written out here, not imported, so later changes to the module do
not change what this migration does.
"""

import re

import django.db.models.deletion
from django.db import migrations, models

TOKENIZE = "tokenize = 'porter unicode61 remove_diacritics 2'"
PER_NAMESPACE = re.compile(r"memories_fts_(\d+)")


def _namespace_tables(schema_editor) -> list[int]:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE %s",
                       ["memories_fts_%"])
        return [int(m.group(1)) for (name,) in cursor.fetchall()
                if (m := PER_NAMESPACE.fullmatch(name))]


def _rebuild(schema_editor, columns: str, select: str) -> None:
    for namespace_id in _namespace_tables(schema_editor):
        table = f"memories_fts_{namespace_id}"
        schema_editor.execute(f"DROP TABLE IF EXISTS {table}_vocab")
        schema_editor.execute(f"DROP TABLE IF EXISTS {table}")
        schema_editor.execute(f"CREATE VIRTUAL TABLE {table} USING fts5({columns}, {TOKENIZE})")
        schema_editor.execute(f"CREATE VIRTUAL TABLE {table}_vocab USING fts5vocab({table}, 'row')")
        schema_editor.execute(f"INSERT INTO {table} {select} WHERE namespace_id = %s", [namespace_id])


def _forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        _rebuild(schema_editor, "memory_id UNINDEXED, content, context, context_id UNINDEXED",
                 "(memory_id, content, context, context_id) "
                 "SELECT id, content, '', NULL FROM memories_memory")
    elif vendor == "postgresql":
        schema_editor.execute("ALTER TABLE memories_memory ADD COLUMN context_search tsvector")
        schema_editor.execute("CREATE INDEX memories_memory_context_search ON memories_memory "
                              "USING GIN (context_search)")


def _backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        _rebuild(schema_editor, "memory_id UNINDEXED, content",
                 "(memory_id, content) SELECT id, content FROM memories_memory")
    elif vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS memories_memory_context_search")
        schema_editor.execute("ALTER TABLE memories_memory DROP COLUMN IF EXISTS context_search")


class Migration(migrations.Migration):

    dependencies = [
        ("memories", "0013_bulk_job"),
        ("tenancy", "0011_apikey_verbose_name_api_keys"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="memory", name="memory_ns_session"),
        migrations.AddField(
            model_name="memory",
            name="context_memory",
            field=models.ForeignKey(
                blank=True, editable=False, null=True, related_name="+", to="memories.memory",
                on_delete=django.db.models.deletion.SET_NULL,
                help_text="The memory indexed with this one as its context: the one before it "
                "in its session when it was stored (apps/memories/context.py). Its words are in "
                "this memory's keyword row and embedding, so erasing it re-indexes this one."),
        ),
        migrations.AddIndex(
            model_name="memory",
            index=models.Index(fields=["namespace", "session_id", "-created_at"],
                               name="memory_ns_session_created"),
        ),
        migrations.RunPython(_forward, _backward),
    ]
