"""SQLite: an fts5vocab view of the keyword index, for per-term document counts.

``lexical.prune_common`` reads it to leave out of a query the terms that occur in a
large share of all memories: they add little to BM25 but most of its cost.
"""

from django.db import migrations


def _forward(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts_vocab USING fts5vocab(memories_fts, 'row')")


def _backward(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("DROP TABLE IF EXISTS memories_fts_vocab")


class Migration(migrations.Migration):
    dependencies = [("memories", "0005_fts_namespace_token")]

    operations = [migrations.RunPython(_forward, _backward)]
