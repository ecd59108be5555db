"""Record key rotation on the key (superseded_by, rotated_at, grace_ends_at), with
constraints that keep a rotated key's expiry within its grace (issue 16, item 3).

Keys rotated before this migration carried the rotation only as an expiry, and an expiry
edit could revive them. Their rotations are in the audit log (``key.expiry`` entries
with ``rotated_to``): the backfill marks those keys superseded, with the cut-off the
entry recorded as the grace end, and brings back any expiry that was cleared or moved
past it (a revived old secret stops working).
"""

import datetime as dt

import django.db.models.deletion
from django.db import migrations, models


def backfill_rotations(apps, schema_editor):
    ApiKey = apps.get_model("tenancy", "ApiKey")
    AuditEntry = apps.get_model("audit", "AuditEntry")
    rotations = AuditEntry.objects.filter(operation="key.expiry", summary__has_key="rotated_to")
    for entry in rotations.order_by("seq").iterator():
        old = ApiKey.objects.filter(pk__in=[int(i) for i in entry.record_ids if str(i).isdigit()],
                                    rotated_at__isnull=True).first()
        cutoff = entry.summary.get("expires_at")
        if old is None or not cutoff:
            continue
        grace_end = dt.datetime.fromisoformat(cutoff)
        old.superseded_by = ApiKey.objects.filter(prefix=entry.summary["rotated_to"]).first()
        old.rotated_at = min(entry.created_at, grace_end)
        old.grace_ends_at = grace_end
        if old.expires_at is None or old.expires_at > grace_end:
            old.expires_at = grace_end
        old.save(update_fields=["superseded_by", "rotated_at", "grace_ends_at", "expires_at"])


class Migration(migrations.Migration):

    dependencies = [
        ("tenancy", "0008_namespace_retention_days"),
        ("audit", "0002_audit_checkpoint"),
    ]

    operations = [
        migrations.AddField(
            model_name="apikey",
            name="grace_ends_at",
            field=models.DateTimeField(blank=True, editable=False, help_text="A rotated key's last moment: its expiry may move earlier, never past this.", null=True),
        ),
        migrations.AddField(
            model_name="apikey",
            name="rotated_at",
            field=models.DateTimeField(blank=True, editable=False, help_text="When this key was rotated away.", null=True),
        ),
        migrations.AddField(
            model_name="apikey",
            name="superseded_by",
            field=models.ForeignKey(blank=True, editable=False, help_text="The key that replaced this one when it was rotated.", null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="supersedes", to="tenancy.apikey"),
        ),
        migrations.RunPython(backfill_rotations, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="apikey",
            constraint=models.CheckConstraint(condition=models.Q(models.Q(("grace_ends_at__isnull", True), ("rotated_at__isnull", True)), models.Q(("grace_ends_at__isnull", False), ("rotated_at__isnull", False)), _connector="OR"), name="apikey_rotation_recorded_whole"),
        ),
        migrations.AddConstraint(
            model_name="apikey",
            constraint=models.CheckConstraint(condition=models.Q(("grace_ends_at__isnull", True), models.Q(("expires_at__isnull", False), ("expires_at__lte", models.F("grace_ends_at"))), _connector="OR"), name="apikey_rotated_expires_within_grace"),
        ),
    ]
