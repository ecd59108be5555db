"""The chain catches every kind of tampering: edits, deletions, reordering, truncation."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from apps.audit import anchor
from apps.audit.models import AuditEntry, AuditHead
from apps.audit.verify import verify

pytestmark = pytest.mark.django_db(transaction=True)  # commits: the anchor file moves


@pytest.fixture
def chain(agent, team_admin):
    """Eight entries from real API calls: stores, an edit, a key, a delete."""
    ids = [agent.post("/api/v1/memories", {"content": f"note {i}"}).json()["id"] for i in range(4)]
    team_admin.patch(f"/api/v1/memories/{ids[0]}", {"importance": 0.9})
    team_admin.post("/api/v1/namespaces/alpha/keys", {"role": "reader", "agent_id": "r"})
    team_admin.delete(f"/api/v1/memories/{ids[1]}")
    assert verify().ok
    return list(AuditEntry.objects.order_by("seq"))


def _sql(statement: str, *params) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def _broken_at() -> tuple[int, str]:
    with pytest.raises(CommandError) as failure:
        call_command("audit_verify", "--no-progress")
    verdict = verify()
    assert not verdict.ok and f"entry {verdict.broken[0]}" in str(failure.value)
    return verdict.broken


def test_an_intact_chain_verifies(chain, capsys):
    call_command("audit_verify", "--no-progress")
    assert f"audit chain intact: {len(chain)} entries" in capsys.readouterr().out
    assert [e.seq for e in chain] == list(range(1, len(chain) + 1))
    assert anchor.read().seq == chain[-1].seq and anchor.read().signed


def test_an_edited_summary_is_caught(chain):
    target = chain[3]
    _sql("UPDATE audit_auditentry SET summary = %s WHERE seq = %s",
         json.dumps({"count": 99}), target.seq)
    seq, problem = _broken_at()
    assert seq == target.seq and "edited" in problem


def test_an_edited_entry_with_a_recomputed_hash_is_caught_by_the_next_link(chain):
    target = AuditEntry.objects.get(seq=chain[2].seq)
    target.actor = "key:someone-else"
    target.entry_hash = target.compute_hash()  # the forger recomputes this entry's hash...
    _sql("UPDATE audit_auditentry SET actor = %s, entry_hash = %s WHERE seq = %s",
         target.actor, target.entry_hash, target.seq)
    seq, problem = _broken_at()  # ...but the next entry still names the old one
    assert seq == target.seq + 1 and "prev_hash" in problem


def test_a_deleted_middle_row_is_caught(chain):
    _sql("DELETE FROM audit_auditentry WHERE seq = %s", chain[4].seq)
    seq, problem = _broken_at()
    assert seq == chain[4].seq and "missing" in problem


def test_two_swapped_rows_are_caught(chain):
    a, b = chain[2].seq, chain[3].seq
    _sql("UPDATE audit_auditentry SET seq = -1 WHERE seq = %s", a)
    _sql("UPDATE audit_auditentry SET seq = %s WHERE seq = %s", a, b)
    _sql("UPDATE audit_auditentry SET seq = %s WHERE seq = -1", b)
    seq, problem = _broken_at()
    assert seq == a and ("prev_hash" in problem or "edited" in problem)


def test_deleting_the_last_rows_is_caught_by_the_head_row(chain):
    _sql("DELETE FROM audit_auditentry WHERE seq > %s", chain[-3].seq)
    seq, problem = _broken_at()
    assert seq == chain[-3].seq + 1 and "head row" in problem


def test_deleting_the_last_rows_and_rewinding_the_head_is_caught_by_the_anchor(chain):
    keep = chain[-3]
    _sql("DELETE FROM audit_auditentry WHERE seq > %s", keep.seq)
    _sql("UPDATE audit_audithead SET seq = %s, entry_hash = %s WHERE id = 1",
         keep.seq, keep.entry_hash)
    seq, problem = _broken_at()
    assert seq == keep.seq + 1 and "anchor says entry" in problem


def test_a_forged_anchor_is_caught(chain, audit_anchor):
    audit_anchor.write_text(json.dumps({"seq": 1, "entry_hash": chain[0].entry_hash,
                                        "hmac": "0" * 64}))
    _, problem = _broken_at()
    assert "signature is invalid" in problem


def test_a_missing_anchor_is_reported_and_reanchor_restores_it(chain, audit_anchor, capsys):
    audit_anchor.unlink()
    _, problem = _broken_at()
    assert "missing" in problem
    call_command("audit_verify", "--no-progress", "--reanchor")
    assert "anchor rewritten" in capsys.readouterr().out
    assert anchor.read().seq == chain[-1].seq
    call_command("audit_verify", "--no-progress")


def test_reanchor_does_not_hide_a_broken_link(chain):
    _sql("DELETE FROM audit_auditentry WHERE seq = %s", chain[1].seq)
    with pytest.raises(CommandError, match="missing"):
        call_command("audit_verify", "--no-progress", "--reanchor")


def test_the_anchor_never_moves_back(chain, audit_anchor):
    anchor.advance(2, chain[1].entry_hash)
    assert anchor.read().seq == chain[-1].seq


def test_verify_over_rest_is_for_system_admins(chain, system_admin, team_admin):
    body = system_admin.get("/api/v1/audit/verify").json()
    assert body["intact"] is True and body["checked"] == AuditEntry.objects.count() > len(chain)
    assert team_admin.get("/api/v1/audit/verify").status_code == 403
    _sql("DELETE FROM audit_auditentry WHERE seq = %s", chain[1].seq)
    body = system_admin.get("/api/v1/audit/verify").json()
    assert body["intact"] is False and body["broken_at"] == chain[1].seq


def test_the_head_row_is_recreated_after_a_flush(db):
    AuditHead.objects.all().delete()
    from apps.tenancy.services import create_namespace

    create_namespace("fresh")
    assert AuditHead.objects.get(pk=1).seq == AuditEntry.objects.get().seq == 1


def test_entries_appended_during_a_walk_are_not_mistaken_for_tampering(chain, agent):
    """A busy server appends while audit_verify runs: the walk stops at the head it read
    first, and the anchor (which moved on) is checked against the table."""
    appended = []

    def write_meanwhile(_count: int) -> None:
        if not appended:
            appended.append(agent.post("/api/v1/memories", {"content": "written mid-walk"}))

    verdict = verify(chunk=3, progress=write_meanwhile)
    assert appended and verdict.ok, verdict.broken
    assert verdict.last_seq < AuditEntry.objects.order_by("-seq").first().seq
    assert anchor.read().seq > verdict.last_seq
