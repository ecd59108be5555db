"""Migration tenancy.0009 records rotations made before it (issue 16, item 3): keys rotated
under the old code carried the rotation only as an expiry, which an edit could clear.
The backfill reads the audit log's rotation entries, marks those keys superseded and
cuts off an old secret that an expiry edit had brought back."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("tenancy", "0008_namespace_retention_days"), ("audit", "0002_audit_checkpoint")]
AFTER = [("tenancy", "0009_apikey_rotation_recorded")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_rotations_before_the_migration_are_recorded_and_revived_keys_cut_off():
    try:
        apps = _migrate(BEFORE)
        Namespace, ApiKey = apps.get_model("tenancy", "Namespace"), apps.get_model("tenancy", "ApiKey")
        AuditEntry = apps.get_model("audit", "AuditEntry")
        namespace = Namespace.objects.create(slug="old", name="old", collection="c-old")
        rotated_at = timezone.now() - dt.timedelta(days=2)
        cutoff = rotated_at + dt.timedelta(hours=1)

        def key(prefix, **fields):
            return ApiKey.objects.create(namespace=namespace, role="agent", agent_id="a",
                                         prefix=prefix, key_hash="h" * 64, **fields)

        revived = key("mw_live_revived00000", expires_at=None)  # an edit cleared the expiry
        successor = key("mw_live_successor000")
        kept = key("mw_live_kept00000000", expires_at=cutoff)  # rotated, left alone
        key("mw_live_kept_next0000")
        untouched = key("mw_live_never0000000")
        for seq, (old, new) in enumerate([(revived, successor.prefix),
                                          (kept, "mw_live_kept_next0000")], start=1):
            AuditEntry.objects.create(
                seq=seq, created_at=rotated_at, actor="key:mw_live_admin", operation="key.expiry",
                namespace="old", record_ids=[str(old.pk)], prev_hash="0" * 64, entry_hash="1" * 64,
                summary={"prefix": old.prefix, "role": "agent", "agent_id": "a",
                         "expires_at": cutoff.isoformat(), "rotated_to": new})

        apps = _migrate(AFTER)
        ApiKey = apps.get_model("tenancy", "ApiKey")
        revived = ApiKey.objects.get(pk=revived.pk)
        assert revived.expires_at == cutoff == revived.grace_ends_at  # dead again
        assert revived.superseded_by_id == successor.pk and revived.rotated_at == rotated_at
        assert ApiKey.objects.get(pk=kept.pk).grace_ends_at == cutoff
        never = ApiKey.objects.get(pk=untouched.pk)
        assert never.rotated_at is None and never.expires_at is None
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
