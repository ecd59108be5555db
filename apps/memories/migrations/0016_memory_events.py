"""Conversation events (issue 20): an event is a memory with an ``event_type`` and a
``role``; its client id is an ExternalId of the new system ``event``.

The two columns are NOT NULL with a database default of ''. Django's SQLite schema
editor adds such a column by copying the whole table (``_remake_table``: it will not use
ADD COLUMN for a NOT NULL column), which on a large ``memories_memory`` means minutes
and twice its size on disk. SQLite's own ``ALTER TABLE ... ADD COLUMN ... NOT NULL
DEFAULT ''`` is a change of the schema alone (existing rows read the default), so on
SQLite the columns are added with it; Django's state is the same either way. PostgreSQL
(11 and later) adds a column with a constant default without rewriting the table, so
Django's own operation is used there.

The index serves ``GET /api/v1/events?session_id=`` (a session in conversation order).
It is partial (events only), so ordinary memories neither pay for it at ingest nor
take room in it. Building it reads the table once; it copies nothing.

``kind`` and ``ExternalId.system`` only gain a choice: no change to the database.
"""

from django.db import migrations, models
from django.db.models import Q


class AddColumnWithDefault(migrations.AddField):
    """AddField that, on SQLite, adds a NOT NULL column with a constant database default
    by ``ALTER TABLE ... ADD COLUMN`` instead of copying the table."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "sqlite":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        field = model._meta.get_field(self.name)
        quote = schema_editor.quote_name
        schema_editor.execute(
            f"ALTER TABLE {quote(model._meta.db_table)} ADD COLUMN {quote(field.column)} "
            f"{field.db_type(schema_editor.connection)} NOT NULL DEFAULT ''")


#: ExternalId.System with the new ``event``.
SYSTEMS = [("memoryweb", "MemoryWeb export"), ("mem0", "mem0"), ("cmm", "seed 000 (CMM)"),
           ("event", "conversation event")]


class Migration(migrations.Migration):

    dependencies = [
        ("memories", "0015_keyword_change"),
        ("tenancy", "0011_apikey_verbose_name_api_keys"),
    ]

    operations = [
        AddColumnWithDefault(
            model_name="memory",
            name="event_type",
            field=models.CharField(
                blank=True, db_default="", default="", max_length=32,
                choices=[("session_start", "Session Start"), ("user_message", "User Message"),
                         ("assistant_message", "Assistant Message"), ("tool_call", "Tool Call"),
                         ("tool_result", "Tool Result"), ("assistant_stop", "Assistant Stop"),
                         ("session_end", "Session End")]),
        ),
        AddColumnWithDefault(
            model_name="memory",
            name="role",
            field=models.CharField(blank=True, db_default="", default="", max_length=32),
        ),
        *(migrations.AlterField(model_name=model, name="system",
                                field=models.CharField(choices=SYSTEMS, max_length=16))
          for model in ("externalid", "externalidsequence")),
        migrations.AlterField(
            model_name="memory",
            name="kind",
            field=models.CharField(
                choices=[("fact", "Fact"), ("preference", "Preference"), ("episode", "Episode"),
                         ("procedure", "Procedure"), ("observation", "Observation"),
                         ("summary", "Summary"), ("note", "Note"), ("event", "Event")],
                default="fact", max_length=32),
        ),
        migrations.AddIndex(
            model_name="memory",
            index=models.Index(fields=["namespace", "session_id", "occurred_at", "created_at"],
                               condition=~Q(event_type=""), name="memory_ns_session_occurred"),
        ),
    ]
