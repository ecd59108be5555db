"""One memory per content and namespace under concurrency (issue 16): ``dedup_slot``.

Dedup used to be check-then-insert: concurrent identical ingests all saw nothing and all
inserted. The database now decides: a new memory claims ``(namespace, dedup_slot)``
(its content hash) and a unique constraint lets one of several concurrent claims in;
the others re-read the winner (services._store).

Why a new column and not a unique constraint on ``content_hash``: what dedup compares
against is the namespace's *live* memories (not expired), and "expired" depends on the
clock, which no constraint can express. Rows also legitimately share a hash: an expired
memory waiting for retention and its renewed copy, a memory edited into another's
words, imported records, and duplicates stored before this fix. So the slot is held by
the memory ingest stored; an edit of its content gives it up, and a holder that expires
is released by the next ingest of that content.

Existing rows: the column starts NULL on every row, so existing duplicates need no
resolving and none is deleted or merged (they have their own ids, audit entries,
versions and external ids that clients may hold). That is safe because dedup still
*reads* live rows by ``content_hash``: an old live row with the same content is found
and returned before any slot is claimed, and once it expires the first new ingest
claims the empty slot. The constraint only covers what cannot already be duplicated:
rows written from now on.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("memories", "0010_idempotency_created_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="memory",
            name="dedup_slot",
            field=models.CharField(blank=True, editable=False, max_length=64, null=True),
        ),
        migrations.AddConstraint(
            model_name="memory",
            constraint=models.UniqueConstraint(
                condition=models.Q(("dedup_slot__isnull", False)),
                fields=("namespace", "dedup_slot"), name="memory_one_per_content"),
        ),
    ]
