"""PostgreSQL: ``blind_search``, an encrypted namespace's keyword index (issue 23).

The generated ``search`` column (0002) is ``to_tsvector('english', content)``; in an
encrypted namespace ``content`` holds ciphertext (apps/memories/sealing.py), so its words
cannot come from there. ``blind_search`` holds the memory's blind tokens
(apps/memories/blind_tokens.py) under the ``simple`` configuration, written by
``lexical.add``/``replace``/``rebuild`` from the text the ORM opened; NULL in every
other namespace. Its GIN index serves ``@@`` like ``search``'s. SQLite needs nothing:
an encrypted namespace's FTS5 table has the same columns, holding tokens instead of words.
"""

from django.db import migrations

POSTGRES_FORWARD = [
    "ALTER TABLE memories_memory ADD COLUMN IF NOT EXISTS blind_search tsvector",
    "CREATE INDEX IF NOT EXISTS memories_memory_blind_search ON memories_memory "
    "USING GIN (blind_search)",
]
POSTGRES_BACKWARD = [
    "DROP INDEX IF EXISTS memories_memory_blind_search",
    "ALTER TABLE memories_memory DROP COLUMN IF EXISTS blind_search",
]


def _run(statements: list[str]):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for sql in statements:
                schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("memories", "0020_sealed_text")]

    operations = [migrations.RunPython(_run(POSTGRES_FORWARD), _run(POSTGRES_BACKWARD))]
