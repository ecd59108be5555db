"""The check and the take-back of ``merged_survivors`` (apps/memories/merge_marks.py)
against versions they did not write: an imported ``system:`` version, a malformed
``changes``, another tenant's unreadable history; and the scrub mark on tags."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.core import namespace_keys
from apps.core.roles import Role
from apps.memories import merge_marks
from apps.memories.imports import ImportRecord, import_records
from apps.memories.models import Memory, MemoryVersion
from apps.tenancy.principal import Principal
from tests.lifecycle.test_erasure_takes_back import _erase, _merge, _store

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Principal(label="system:test", agent_id="", role=Role.SYSTEM)
FORGED = {"tags": {"by": "erasure", "erased": 1, "digests": 2}}


def _import_with_history(namespace: str, changed_by: str, changes: dict):
    record = ImportRecord(line=1, system="test", external_id="x-1", data={
        "content": "Imported with a history", "version": 2, "versions": [{
            "version": 2, "changed_by": changed_by,
            "changed_at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC).isoformat(),
            "changes": changes}]})
    return import_records(ROOT, namespace, [record])


def test_an_imported_system_version_is_relabelled_and_breaks_no_erasure(
        alpha, beta, agent, team_admin, system_admin):
    report = _import_with_history("beta", "system:erasure", FORGED)
    assert report.created == 1, report.errors
    imported = MemoryVersion.objects.get(memory__namespace=beta)
    assert imported.changed_by == "import:system:erasure"  # an export carries such labels
    ids = _store(agent, [["patient-0"], ["patient-1"], ["patient-2"]])
    _merge(team_admin, ids, ids[2])
    certificate = _erase(team_admin, system_admin, [ids[0]])
    assert certificate["verification"]["merged_survivors"] == {"remaining": 0, "ok": True}


def test_malformed_changes_on_a_survivor_stop_the_walk_not_the_erasure(
        alpha, agent, team_admin, system_admin):
    ids = _store(agent, [["patient-0"], ["patient-1"], ["patient-2"]])
    _merge(team_admin, ids, ids[2])
    merged = MemoryVersion.objects.get(memory_id=ids[2], version=2)
    merged.changes = {"tags": {"by": "merge", "before": 1, "after": [{"x": 1}, "patient-0"]},
                      "content": {"by": "merge_text", "before": "a", "after": "b", "from": 3}}
    merged.save()
    # Someone else's forged erasure version on the survivor: its check reads it.
    MemoryVersion.objects.create(memory_id=ids[2], version=99, changed_by="system:erasure",
                                 changes=FORGED)
    certificate = _erase(team_admin, system_admin, [ids[0]])
    assert certificate["verification"]["merged_survivors"]["ok"] is True
    # The walk stopped at the malformed merge: nothing was gained, so nothing is dropped.
    assert "patient-0" in Memory.objects.get(pk=ids[2]).tags


def test_the_check_reads_only_the_certificate_s_survivors(
        alpha, vault, vault_agent, agent, team_admin, system_admin):
    held = vault_agent.post("/api/v1/memories", {"content": "Vault note"}).json()["id"]
    MemoryVersion.objects.create(memory_id=held, version=2, changed_by="system:erasure",
                                 changes={"tags": {"by": "erasure", "erased": ["x"]}})
    namespace_keys.shred(vault.pk)  # another tenant's history cannot be opened now
    namespace_keys.forget_all()
    ids = _store(agent, [["patient-0"], ["patient-1"], ["patient-2"]])
    _merge(team_admin, ids, ids[2])
    certificate = _erase(team_admin, system_admin, [ids[0]])
    assert certificate["verification"]["merged_survivors"] == {"remaining": 0, "ok": True}


def test_survivors_are_locked_at_once_in_pk_order(alpha, agent, team_admin, monkeypatch):
    from apps.lifecycle.consolidation import merge
    from apps.memories import writes

    first = _store(agent, [["a-0"], ["a-1"], ["a-2"]])
    _merge(team_admin, first, first[2])
    second = [agent.post("/api/v1/memories", {"content": text, "tags": [f"b-{n}"]}).json()["id"]
              for n, text in enumerate(["The VPN gateway is vpn-3 in Frankfurt.",
                                        "Note: the VPN gateway is vpn-3 (Frankfurt)."])]
    assert merge(Principal.for_key(team_admin.key), "alpha", second, second[1]).merged == 1
    calls: list[list[str]] = []
    original = merge_marks._locked

    def spy(pks):
        calls.append(list(pks))
        return original(pks)

    monkeypatch.setattr(merge_marks, "_locked", spy)
    with writes.atomic():
        merge_marks.erase(alpha, [second[0], first[0]])
    assert calls == [sorted({first[2], second[1]})]  # one lock, a canonical order
    assert "b-0" not in Memory.objects.get(pk=second[1]).tags
    assert "a-0" not in Memory.objects.get(pk=first[2]).tags


def test_a_tags_scrub_marks_the_version(alpha, agent, team_admin, system_admin):
    ids = _store(agent, [["patient-0"], ["patient-1"], ["patient-2"]])
    _merge(team_admin, ids, ids[2])
    _erase(team_admin, system_admin, [ids[0]])
    merged = MemoryVersion.objects.get(memory_id=ids[2], version=2).changes["tags"]
    assert merged["by"] == "merge" and merged["scrubbed"] == "erasure"


def test_unmerge_of_a_member_locks_its_survivor_first(alpha, agent, team_admin, monkeypatch):
    """As an erasure does (its survivors, then its delete of the members): no deadlock."""
    from django.db.models import QuerySet

    from apps.lifecycle.consolidation import unmerge

    ids = _store(agent, [["patient-0"], ["patient-1"], ["patient-2"]])
    _merge(team_admin, ids, ids[2])
    order: list[str] = []

    class Spy:
        def __init__(self, queryset):
            self.queryset = queryset

        def __getattr__(self, name):
            attr = getattr(self.queryset, name)

            def called(*args, **kwargs):
                if name in ("filter", "get") and "pk" in kwargs:
                    order.append(str(kwargs["pk"]))
                found = attr(*args, **kwargs)
                return Spy(found) if isinstance(found, QuerySet) else found
            return called if callable(attr) else attr

    original = Memory.objects.select_for_update
    monkeypatch.setattr(Memory.objects, "select_for_update",
                        lambda *args, **kwargs: Spy(original(*args, **kwargs)))
    unmerge(Principal.for_key(team_admin.key), ids[0])
    assert order[0] == ids[2]
