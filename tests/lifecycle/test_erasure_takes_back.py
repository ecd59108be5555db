"""Erasing a merged member takes back what it gave the survivor (issue 21, item 5):
the tags only it brought (tag rows, the vector index's metadata, the API, a version marked
``"by": "erasure"``), those tags scrubbed from the survivor's ``by: merge`` versions, and a
text the survivor was given at the merge (``merge(content=...)``) reverted and scrubbed.
The certificate lists it (``touched.merged_survivors``) and fails when a taken-back tag is
planted back on the survivor."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from apps.memories import merge_marks
from apps.memories.models import Memory, MemoryTag, MemoryVersion
from apps.memories.vectorstore import get_vector_store
from apps.tenancy.principal import Principal
from tests.helpers.erasure import erase_through_requests

#: Commits for real: the erasure's steps and the audit anchor, as certificates check them.
pytestmark = pytest.mark.django_db(transaction=True)
STAGING = ["The staging database runs PostgreSQL 15 on host db-2.",
           "Note: the staging database runs on PostgreSQL 15 (host db-2).",
           "Staging database: PostgreSQL 15, running on host db-2."]


def _store(agent, tags: list[list[str]]) -> list[str]:
    ids = []
    for text, own in zip(STAGING, tags, strict=True):
        response = agent.post("/api/v1/memories", {"content": text, "tags": own})
        assert response.status_code == 201, response.content
        ids.append(response.json()["id"])
    return ids


def _merge(team_admin, ids: list[str], survivor: str, content: str | None = None) -> None:
    from apps.lifecycle.consolidation import merge

    outcome = merge(Principal.for_key(team_admin.key), "alpha", ids, survivor, content=content)
    assert outcome.merged == 1
    assert outcome.rewritten == (content is not None), outcome.rewrite_error


def _erase(team_admin, system_admin, ids: list[str]) -> dict:
    return erase_through_requests(team_admin, system_admin, {"namespace": "alpha", "ids": ids})


def _history(memory_id: str) -> str:
    return json.dumps([v.changes for v in MemoryVersion.objects.filter(memory_id=memory_id)])


def _indexed_metadata(alpha, memory_id: str) -> str:
    found = get_vector_store().collection(alpha).get(ids=[memory_id], include=["metadatas"])
    return json.dumps(found["metadatas"])


def test_erasing_a_member_takes_back_the_tags_only_it_gave(alpha, agent, team_admin,
                                                          system_admin):
    ids = _store(agent, [["db", "patient-0"], ["db", "shared", "patient-1"],
                         ["own", "shared", "patient-2"]])
    survivor, erased = ids[2], ids[0]
    _merge(team_admin, ids, survivor)
    assert set(Memory.objects.get(pk=survivor).tags) == {
        "own", "shared", "patient-2", "db", "patient-0", "patient-1"}

    certificate = _erase(team_admin, system_admin, [erased])

    kept = Memory.objects.get(pk=survivor)
    # db: member 1 still holds it; own, shared, patient-2: the survivor's own.
    assert set(kept.tags) == {"own", "shared", "patient-2", "db", "patient-1"}
    assert set(MemoryTag.objects.filter(memory_id=survivor).values_list("tag", flat=True)) \
        == set(kept.tags)
    shown = team_admin.get(f"/api/v1/memories/{survivor}").json()
    assert "patient-0" not in shown["tags"]
    assert "patient-0" not in _indexed_metadata(alpha, survivor)
    latest = kept.versions.order_by("-version").first().changes["tags"]
    assert latest["by"] == "erasure" and latest["after"] == kept.tags
    assert "patient-0" not in _history(survivor)  # the merge version's "after" scrubbed
    merged = kept.versions.order_by("version").first().changes["tags"]
    assert merged["by"] == "merge" and "patient-1" in merged["after"]
    assert {"memory": survivor, "change": "tags_dropped"} in certificate["touched"][
        "merged_survivors"]
    assert certificate["verification"]["merged_survivors"] == {"remaining": 0, "ok": True}
    listed = team_admin.get("/api/v1/memories", {"tag": "patient-0"}).json()
    assert not listed["results"]


def test_a_taken_back_tag_planted_back_fails_the_certificate(alpha, agent, team_admin,
                                                            system_admin, tmp_path):
    ids = _store(agent, [["patient-0"], ["patient-1"], ["patient-2"]])
    _merge(team_admin, ids, ids[2])
    certificate = _erase(team_admin, system_admin, [ids[0]])
    path = tmp_path / "certificate.json"
    path.write_text(json.dumps(certificate))
    call_command("verify_certificate", str(path))
    # The tag put back on the survivor (a restored backup, a buggy job): the certificate's
    # check finds it, though the member and its tag rows are gone.
    response = team_admin.patch(f"/api/v1/memories/{ids[2]}",
                                {"tags": ["patient-2", "patient-1", "patient-0"]})
    assert response.status_code == 200, response.content
    with pytest.raises(CommandError, match="merged_survivors"):
        call_command("verify_certificate", str(path))


def test_a_person_editing_the_tags_after_the_merge_keeps_them(alpha, agent, team_admin,
                                                             system_admin):
    """As unmerge: a person's tags edit since the merge makes the survivor's tags theirs."""
    ids = _store(agent, [["patient-0"], ["patient-1"], ["patient-2"]])
    _merge(team_admin, ids, ids[2])
    tags = [*Memory.objects.get(pk=ids[2]).tags, "reviewed"]
    assert team_admin.patch(f"/api/v1/memories/{ids[2]}", {"tags": tags}).status_code == 200
    certificate = _erase(team_admin, system_admin, [ids[0]])
    assert Memory.objects.get(pk=ids[2]).tags == tags
    assert all(entry["change"] != "tags_dropped"
               for entry in certificate["touched"].get("merged_survivors", []))
    assert certificate["verification"]["merged_survivors"]["ok"] is True


def test_a_content_edit_after_the_merge_does_not_keep_them(alpha, agent, team_admin,
                                                          system_admin):
    ids = _store(agent, [["patient-0"], ["patient-1"], ["patient-2"]])
    _merge(team_admin, ids, ids[2])
    assert team_admin.patch(f"/api/v1/memories/{ids[2]}",
                            {"importance": 0.9}).status_code == 200
    _erase(team_admin, system_admin, [ids[0], ids[1]])
    assert Memory.objects.get(pk=ids[2]).tags == ["patient-2"]
    assert "patient-0" not in _history(ids[2]) and "patient-1" not in _history(ids[2])


def test_a_text_rewritten_at_the_merge_is_reverted_and_scrubbed(alpha, agent, team_admin,
                                                               system_admin):
    ids = _store(agent, [["patient-0"], ["patient-1"], ["patient-2"]])
    merged_text = "Staging database: PostgreSQL 15 on host db-2 (zorblax maintenance window)."
    _merge(team_admin, ids, ids[2], content=merged_text)
    assert Memory.objects.get(pk=ids[2]).content == merged_text

    certificate = _erase(team_admin, system_admin, [ids[0]])

    kept = Memory.objects.get(pk=ids[2])
    assert kept.content == STAGING[2]
    assert "zorblax" not in _history(ids[2])
    latest = kept.versions.order_by("-version").first().changes
    assert latest["content"]["by"] == "erasure" and latest["content"]["after"] == STAGING[2]
    assert {"memory": ids[2], "change": "text_reverted"} in certificate["touched"][
        "merged_survivors"]
    found = team_admin.post("/api/v1/recall", {"query": "zorblax", "mode": "lexical"})
    assert found.status_code == 200, found.content
    assert not found.json()["results"]
    assert "patient-1" in kept.tags and "patient-0" not in kept.tags


def test_a_text_edited_by_a_person_after_the_merge_is_kept(alpha, agent, team_admin,
                                                          system_admin):
    """The person's text is kept; the merged text leaves the history all the same (the
    ``merge_text`` version's ``after``, the person's version's ``before``)."""
    ids = _store(agent, [[], [], []])
    _merge(team_admin, ids, ids[2], content="Staging DB: PostgreSQL 15, host db-2 (zorblax).")
    edited = "Staging DB: PostgreSQL 15 on db-2, checked by Ana."
    assert team_admin.patch(f"/api/v1/memories/{ids[2]}", {"content": edited}).status_code == 200
    certificate = _erase(team_admin, system_admin, [ids[0]])
    kept = Memory.objects.get(pk=ids[2])
    assert kept.content == edited
    assert "zorblax" not in _history(ids[2])
    person = kept.versions.order_by("-version").first().changes["content"]
    assert person["before"] == STAGING[2] and person["after"] == edited
    assert certificate["touched"]["merged_survivors"] == [
        {"memory": ids[2], "change": "history_scrubbed"}]


def test_unmerge_after_an_erasure_still_takes_back_the_rest(alpha, agent, team_admin,
                                                           system_admin):
    ids = _store(agent, [["patient-0"], ["patient-1"], ["patient-2"]])
    _merge(team_admin, ids, ids[2])
    _erase(team_admin, system_admin, [ids[0]])
    response = team_admin.post(f"/api/v1/memories/{ids[2]}/unmerge")
    assert response.status_code == 200, response.content
    assert Memory.objects.get(pk=ids[2]).tags == ["patient-2"]


def test_a_survivor_merged_again_passes_up_what_it_lost(alpha, agent, team_admin,
                                                       system_admin):
    """A merged into S, then S into T: erasing A takes its tag from S and from T."""
    ids = _store(agent, [["patient-0"], ["own-s"], ["own-t"]])
    a, s, t = ids
    _merge(team_admin, [a, s], s)
    _merge(team_admin, [s, t], t)
    assert set(Memory.objects.get(pk=t).tags) == {"own-t", "own-s", "patient-0"}

    certificate = _erase(team_admin, system_admin, [a])

    assert Memory.objects.get(pk=s).tags == ["own-s"]
    assert set(Memory.objects.get(pk=t).tags) == {"own-t", "own-s"}
    assert "patient-0" not in _history(s) + _history(t)
    for kept in (s, t):  # each names the erased member: the check finds a tag planted back
        change = Memory.objects.get(pk=kept).versions.order_by("-version").first().changes
        assert change["tags"]["by"] == "erasure" and change["tags"]["erased"] == [a]
    assert certificate["touched"]["merged_survivors"] == sorted(
        [{"memory": s, "change": "tags_dropped"}, {"memory": t, "change": "tags_dropped"}],
        key=lambda entry: entry["memory"])
    assert certificate["verification"]["merged_survivors"] == {"remaining": 0, "ok": True}


def test_in_an_encrypted_namespace_the_sealed_history_is_scrubbed(vault, vault_agent,
                                                                 vault_admin, system_admin):
    from apps.lifecycle.consolidation import merge

    ids = []
    for text, tag in zip(STAGING, ["patient-0", "patient-1", "patient-2"], strict=True):
        response = vault_agent.post("/api/v1/memories", {"content": text, "tags": [tag]})
        assert response.status_code == 201, response.content
        ids.append(response.json()["id"])
    outcome = merge(Principal.for_key(vault_admin.key), "vault", ids, ids[2],
                    content="Staging DB on db-2 runs PostgreSQL 15 (zorblax).")
    assert outcome.rewritten, outcome.rewrite_error
    certificate = erase_through_requests(vault_admin, system_admin,
                                         {"namespace": "vault", "ids": [ids[0]]})
    kept = Memory.objects.get(pk=ids[2])
    assert kept.content == STAGING[2] and "patient-0" not in kept.tags
    history = _history(ids[2])  # opened through the sealed field
    assert '"by": "merge"' in history and '"by": "erasure"' in history  # opened
    assert "patient-0" not in history and "zorblax" not in history
    assert certificate["verification"]["merged_survivors"] == {"remaining": 0, "ok": True}
    assert {entry["change"] for entry in certificate["touched"]["merged_survivors"]} == {
        "tags_dropped", "text_reverted"}


def test_a_revert_to_the_text_before_the_merge_still_scrubs_the_merged_text(
        alpha, agent, team_admin, system_admin):
    from apps.memories.services import editing

    ids = _store(agent, [["patient-0"], ["patient-1"], ["patient-2"]])
    _merge(team_admin, ids, ids[2], content="Merged zorblax text.")
    version = Memory.objects.get(pk=ids[2]).version
    editing.revert(Principal.for_key(team_admin.key), ids[2], version - 1)
    assert Memory.objects.get(pk=ids[2]).content == STAGING[2]

    certificate = _erase(team_admin, system_admin, [ids[0]])

    assert Memory.objects.get(pk=ids[2]).content == STAGING[2]
    assert "zorblax" not in _history(ids[2])
    assert {"memory": ids[2], "change": "tags_dropped"} in certificate["touched"][
        "merged_survivors"]
    assert {"memory": ids[2], "change": "text_reverted"} not in certificate["touched"][
        "merged_survivors"]  # its text is already the one before the merge


def test_a_merged_text_built_on_an_erased_member_s_text_goes_too(alpha, agent, team_admin,
                                                                system_admin):
    """Two merges: T1 from member 0, then T2 from member 1 on top of T1. Erasing member 0
    reverts the survivor to its own text and scrubs both merged texts."""
    ids = _store(agent, [[], [], []])
    _merge(team_admin, [ids[0], ids[2]], ids[2], content="First zorblax text from member 0.")
    _merge(team_admin, [ids[1], ids[2]], ids[2], content="Second text, built on quuxly.")

    certificate = _erase(team_admin, system_admin, [ids[0]])

    kept = Memory.objects.get(pk=ids[2])
    assert kept.content == STAGING[2]
    history = _history(ids[2])
    assert "zorblax" not in history and "quuxly" not in history
    assert {"memory": ids[2], "change": "text_reverted"} in certificate["touched"][
        "merged_survivors"]


def _before_the_lock(monkeypatch, action) -> None:
    """Run ``action`` when the erasure first locks a survivor (after it found what to take
    back), as a concurrent transaction committing just then would."""
    original = Memory.objects.select_for_update
    pending = [action]

    def hooked(*args, **kwargs):
        while pending:
            pending.pop()()
        return original(*args, **kwargs)

    monkeypatch.setattr(Memory.objects, "select_for_update", hooked)


def test_a_concurrent_erasure_s_scrub_is_not_written_back(alpha, agent, team_admin,
                                                         monkeypatch):
    from apps.memories import writes

    ids = _store(agent, [["patient-0"], ["patient-1"], ["patient-2"]])
    _merge(team_admin, ids, ids[2])
    _before_the_lock(monkeypatch, lambda: merge_marks.erase(alpha, [ids[0]]))
    with writes.atomic():
        merge_marks.erase(alpha, [ids[1]])
    assert "patient-0" not in _history(ids[2]) and "patient-1" not in _history(ids[2])
    assert Memory.objects.get(pk=ids[2]).tags == ["patient-2"]


def test_a_person_s_concurrent_tags_edit_is_kept(alpha, agent, team_admin, monkeypatch):
    from apps.memories import writes

    ids = _store(agent, [["patient-0"], ["patient-1"], ["patient-2"]])
    _merge(team_admin, ids, ids[2])
    tags = [*Memory.objects.get(pk=ids[2]).tags, "reviewed"]

    def edit() -> None:
        response = team_admin.patch(f"/api/v1/memories/{ids[2]}", {"tags": tags})
        assert response.status_code == 200, response.content

    _before_the_lock(monkeypatch, edit)
    with writes.atomic():
        merge_marks.erase(alpha, [ids[0]])
    assert Memory.objects.get(pk=ids[2]).tags == tags


def test_a_tag_planted_back_after_a_namespace_merge_fails_the_certificate(
        alpha, beta, agent, team_admin, system_admin, tmp_path):
    from apps.lifecycle import namespace_merge

    ids = _store(agent, [["patient-0"], ["patient-1"], ["patient-2"]])
    _merge(team_admin, ids, ids[2])
    certificate = _erase(team_admin, system_admin, [ids[0]])
    path = tmp_path / "certificate.json"
    path.write_text(json.dumps(certificate))
    moving = namespace_merge.start(Principal.for_key(system_admin.key), "alpha", "beta")
    assert namespace_merge.run(moving.pk) == "done"
    call_command("verify_certificate", str(path))
    survivor = Memory.objects.get(pk=ids[2])
    assert survivor.namespace.slug == "beta"
    survivor.tags = [*survivor.tags, "patient-0"]  # planted back (a restored backup)
    survivor.save()
    with pytest.raises(CommandError, match="merged_survivors"):
        call_command("verify_certificate", str(path))


def test_a_member_s_tags_leave_the_versions_below_a_person_s_tags_edit(
        alpha, agent, team_admin, system_admin):
    """Merge, unmerge, a person's tags edit, merge again, erase the member: its tag leaves
    the first merge's ``after`` and the unmerge's ``before`` too."""
    ids = _store(agent, [["patient-0"], ["patient-1"], ["patient-2"]])
    _merge(team_admin, [ids[0], ids[2]], ids[2])
    response = team_admin.post(f"/api/v1/memories/{ids[2]}/unmerge")
    assert response.status_code == 200, response.content
    tags = [*Memory.objects.get(pk=ids[2]).tags, "reviewed"]
    assert team_admin.patch(f"/api/v1/memories/{ids[2]}", {"tags": tags}).status_code == 200
    _merge(team_admin, [ids[0], ids[2]], ids[2])

    certificate = _erase(team_admin, system_admin, [ids[0]])

    assert Memory.objects.get(pk=ids[2]).tags == ["patient-2", "reviewed"]
    assert "patient-0" not in _history(ids[2])
    assert certificate["verification"]["merged_survivors"] == {"remaining": 0, "ok": True}


def test_a_member_s_tag_a_person_removed_leaves_the_history(alpha, agent, team_admin,
                                                            system_admin):
    """A person's tags edit without the member's tag stops the walk, but the tag still
    leaves the merge's ``after`` and that edit's ``before``."""
    ids = _store(agent, [["patient-0"], ["patient-1"], ["patient-2"]])
    _merge(team_admin, ids, ids[2])
    tags = ["patient-2", "patient-1", "reviewed"]
    assert team_admin.patch(f"/api/v1/memories/{ids[2]}", {"tags": tags}).status_code == 200
    certificate = _erase(team_admin, system_admin, [ids[0]])
    assert Memory.objects.get(pk=ids[2]).tags == tags
    assert "patient-0" not in _history(ids[2])
    assert certificate["touched"]["merged_survivors"] == [
        {"memory": ids[2], "change": "history_scrubbed"}]


def test_the_merged_text_is_stored_trimmed(alpha, agent, team_admin):
    ids = _store(agent, [[], [], []])
    _merge(team_admin, ids, ids[2], content="   Merged text, padded.  ")
    kept = Memory.objects.get(pk=ids[2])
    assert kept.content == "Merged text, padded."
    assert kept.versions.order_by("-version").first().changes["content"]["after"] == \
        "Merged text, padded."
