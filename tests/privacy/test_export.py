"""Export: memories with versions, the grants that expose them, the audit entries about
them, and a manifest whose SHA-256 covers the body."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.core.management import call_command

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.tenancy.models import SharingGrant
from tests.helpers.callers import make_caller


def _read(response) -> tuple[list[dict], dict, bytes]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/x-ndjson"
    raw = b"".join(response.streaming_content)
    lines = raw.splitlines(keepends=True)
    manifest = json.loads(lines[-1])
    assert manifest["type"] == "manifest"
    return [json.loads(line) for line in lines[:-1]], manifest, b"".join(lines[:-1])


@pytest.fixture
def held(alpha, beta, agent, team_admin, stored):
    """alpha: two agents' memories, one edited, one about a subject; a grant on tag ops."""
    other = make_caller(Role.AGENT, alpha, "agent-2")
    memories = {
        "ops": stored("Deploys run at noon.", tags=["ops"], session_id="s1"),
        "subject": stored("Dana prefers tea.", metadata={"subject_id": "dana"}, session_id="s1"),
        "other": other.post("/api/v1/memories", {"content": "Agent two's note."}).json(),
    }
    team_admin.patch(f"/api/v1/memories/{memories['ops']['id']}", {"content": "Deploys run at one."})
    grant = team_admin.post("/api/v1/namespaces/alpha/grants", {"grantee": "beta",
                                                                "tags": ["ops"]}).json()
    team_admin.post("/api/v1/namespaces/alpha/grants", {"grantee": "beta", "tags": ["nothing"]})
    return {**memories, "grant": grant}


def test_namespace_export_holds_everything_with_a_checkable_manifest(team_admin, held):
    lines, manifest, body = _read(team_admin.get("/api/v1/export"))
    memories = [line for line in lines if line["type"] == "memory"]
    assert {m["id"] for m in memories} == {held[k]["id"] for k in ("ops", "subject", "other")}
    ops = next(m for m in memories if m["id"] == held["ops"]["id"])
    assert ops["content"] == "Deploys run at one."
    assert [v["version"] for v in ops["versions"]] == [2]
    assert ops["versions"][0]["changes"]["content"]["before"] == "Deploys run at noon."
    grants = [line for line in lines if line["type"] == "grant"]
    assert [g["id"] for g in grants] == [held["grant"]["id"]]  # the one exposing a memory
    audit = [line for line in lines if line["type"] == "audit"]
    alpha_entries = AuditEntry.objects.filter(namespace="alpha").exclude(operation="export")
    assert {e["seq"] for e in audit} >= set(alpha_entries.values_list("seq", flat=True))
    assert manifest["counts"] == {"memory": 3, "version": 1, "grant": 1, "audit": len(audit)}
    assert manifest["sha256"] == hashlib.sha256(body).hexdigest()
    assert manifest["selector"] == {"namespace": "alpha"}
    assert manifest["exported_by"] == f"key:{team_admin.key.prefix}"


@pytest.mark.parametrize(("query", "expected"), [
    ("agent_id=agent-2", ["other"]),
    ("session_id=s1", ["ops", "subject"]),
    ("subject_id=dana", ["subject"]),
    ("ids={ops},{other}", ["ops", "other"]),
])
def test_subject_export_holds_only_the_subject(team_admin, held, query, expected):
    query = query.format(**{k: held[k]["id"] for k in ("ops", "other")})
    lines, manifest, _ = _read(team_admin.get(f"/api/v1/export?{query}"))
    ids = {line["id"] for line in lines if line["type"] == "memory"}
    assert ids == {held[k]["id"] for k in expected}
    for entry in (line for line in lines if line["type"] == "audit"):
        assert set(entry["record_ids"]) & ids  # only entries about the subject's memories
    assert manifest["counts"]["memory"] == len(expected)


def test_export_is_audited(team_admin, held):
    team_admin.get("/api/v1/export?agent_id=agent-2")
    entry = AuditEntry.objects.filter(operation="export").get()
    assert entry.summary == {"namespace": "alpha", "agent_id": "agent-2", "memories": 1}
    assert entry.actor == f"key:{team_admin.key.prefix}"


def test_export_needs_a_team_admin_of_the_namespace(reader, agent, outsider, system_admin, held):
    assert reader.get("/api/v1/export").status_code == 403
    assert agent.get("/api/v1/export").status_code == 403
    assert outsider.get("/api/v1/export?namespace=alpha").status_code == 404
    assert system_admin.get("/api/v1/export").status_code == 400  # names no namespace
    assert system_admin.get("/api/v1/export?namespace=alpha").status_code == 200


@pytest.mark.parametrize(("query", "field"), [
    ("agent_id=a&session_id=b", "session_id"),
    ("ids=not-a-uuid", "ids"),
    ("colour=red", "colour"),
])
def test_bad_selectors_are_400(team_admin, query, field):
    response = team_admin.get(f"/api/v1/export?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["field"].startswith(field)
    assert not AuditEntry.objects.filter(operation="export").exists()


def test_manage_py_export_writes_the_same_format(held, tmp_path, capsys):
    out = tmp_path / "alpha.jsonl"
    call_command("export", "--namespace", "alpha", "--session-id", "s1", "--output", str(out))
    lines = out.read_bytes().splitlines(keepends=True)
    manifest = json.loads(lines[-1])
    assert manifest["counts"]["memory"] == 2
    assert manifest["sha256"] == hashlib.sha256(b"".join(lines[:-1])).hexdigest()
    assert "exported 2 memories" in capsys.readouterr().out
    assert AuditEntry.objects.filter(operation="export",
                                     actor="system:manage.py export").exists()


def test_revoked_grants_that_exposed_memories_are_listed_with_their_status(team_admin, held):
    SharingGrant.objects.filter(pk=held["grant"]["id"]).update(revoked_at="2026-01-01T00:00:00Z")
    lines, _, _ = _read(team_admin.get("/api/v1/export"))
    grant = next(line for line in lines if line["type"] == "grant")
    assert grant["status"] == "revoked"


def test_subject_export_holds_only_the_namespaces_own_audit_entries(team_admin, outsider, beta,
                                                                    held):
    """beta audits its recalls, and recalls alpha's shared memory: that entry is beta's
    record (its key, its agent, its own memory ids), never part of alpha's export."""
    beta.audit_reads = True
    beta.save()
    outsider.post("/api/v1/memories", {"content": "Beta's deploy notes."})
    outsider.post("/api/v1/recall", {"query": "deploys", "include_shared": True})
    beta_entry = AuditEntry.objects.get(operation="memory.recall")
    assert held["ops"]["id"] in beta_entry.record_ids  # the shared memory, named by beta
    lines, _, raw = _read(team_admin.get(f"/api/v1/export?ids={held['ops']['id']}"))
    assert beta_entry.seq not in {line["seq"] for line in lines if line["type"] == "audit"}
    assert outsider.key.prefix.encode() not in raw
