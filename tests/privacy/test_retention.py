"""Retention erases what is too old or expired through the erasure path, certified."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.memories.models import Memory
from apps.privacy.models import ErasureRequest

pytestmark = pytest.mark.django_db(transaction=True)


def test_expire_memories_erases_old_and_expired_ones_with_a_certificate(alpha, team_admin, agent,
                                                                        stored, capsys, tmp_path):
    old, expired, fresh = (stored(text)["id"] for text in ("an old note", "a passing note",
                                                           "a fresh note"))
    Memory.objects.filter(pk=old).update(created_at=timezone.now() - dt.timedelta(days=40))
    Memory.objects.filter(pk=expired).update(expires_at=timezone.now() - dt.timedelta(hours=1))
    assert team_admin.patch("/api/v1/namespaces/alpha", {"retention_days": 30}).status_code == 200

    call_command("expire_memories", "--dry-run")
    assert "2 memories due (dry run)" in capsys.readouterr().out
    assert Memory.objects.count() == 3

    call_command("expire_memories")
    assert "2 memories erased" in capsys.readouterr().out
    assert list(Memory.objects.values_list("pk", flat=True)) == [Memory.objects.get(pk=fresh).pk]
    request = ErasureRequest.objects.get()
    assert request.state == "executed" and request.requested_by == "system:retention"
    assert {item["id"] for item in request.erased} == {old, expired}
    assert AuditEntry.objects.filter(operation="memory.erase", actor="system:retention").exists()
    path = tmp_path / "certificate.json"
    path.write_text(json.dumps(request.certificate))
    call_command("verify_certificate", str(path))

    call_command("expire_memories")  # nothing left to do: no empty certificates
    assert ErasureRequest.objects.count() == 1


def test_retention_days_are_validated(team_admin):
    response = team_admin.patch("/api/v1/namespaces/alpha", {"retention_days": 0})
    assert response.status_code == 400 and response.json()["error"]["field"] == "retention_days"
