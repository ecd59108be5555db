"""An import restores its source's near-duplicate links once every record is in, with one
``memory.import`` audit entry — committed for real, as ``manage.py import_memories`` runs
(outside any test transaction: the audit log refuses an entry outside the change's own
transaction, and the restore once wrote its links and entry outside one)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from apps.audit.models import AuditEntry
from apps.memories.models import Memory

pytestmark = pytest.mark.django_db(transaction=True)
TEXTS = ["The staging database runs PostgreSQL 15 on host db-2.",
         "The staging database runs PostgreSQL 15 on host db-2 (replica)."]


def test_near_duplicate_links_are_restored_and_audited(agent, team_admin, beta, tmp_path):
    first = agent.post("/api/v1/memories", {"content": TEXTS[0]}).json()
    second = agent.post("/api/v1/memories", {"content": TEXTS[1]}).json()
    assert second["near_duplicate_of"] == first["id"], second
    path = tmp_path / "alpha.jsonl"
    path.write_bytes(b"".join(team_admin.get("/api/v1/export").streaming_content))
    assert any(json.loads(line).get("near_duplicate_of") == first["id"]
               for line in path.read_text().splitlines())

    out = io.StringIO()
    call_command("import_memories", "--namespace", "beta", "--format", "jsonl", str(path),
                 "--no-progress", stdout=out, stderr=io.StringIO())
    assert "1 near-duplicate links restored" in out.getvalue()
    copies = dict(Memory.objects.filter(namespace=beta).values_list("content", "pk"))
    assert Memory.objects.get(pk=copies[TEXTS[1]]).near_duplicate_of_id == copies[TEXTS[0]]
    entry = AuditEntry.objects.filter(operation="memory.import", namespace="beta",
                                      summary__near_duplicates_linked=1).get()
    assert entry.record_ids == [str(copies[TEXTS[1]])]
