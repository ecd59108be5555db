"""Namespace merge (issue 21, item 3): every memory of alpha moves into beta with its id,
versions and lineage, dedup on the way, audited; alpha archived, its keys and grants
revoked; resumable; reversible; erasure in the target reaches the moved memories."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.lifecycle import namespace_merge
from apps.lifecycle.models import NamespaceMerge, NamespaceMergeItem
from apps.lifecycle.tasks import run_namespace_merge
from apps.memories import lexical, stores
from apps.memories.models import AgentRecord, ExternalId, Memory, MemoryLink, MemoryVersion
from apps.memories.vectorstore import get_vector_store
from apps.memories.write_moves import MOVE_HANDLING
from apps.tenancy.models import ApiKey, Namespace, SharingGrant
from apps.tenancy.principal import Principal
from tests.helpers.callers import make_caller
from tests.helpers.erasure import erase_through_requests

#: Commits for real: batches commit with their progress, erasure certifies after commit.
pytestmark = pytest.mark.django_db(transaction=True)

ALPHA_TEXTS = ["Alpha's deploy window is Tuesday at 14:00 UTC.",
               "The staging database runs PostgreSQL 15 on host db-2.",
               "Ada prefers written status updates over meetings.",
               "The on-call rotation changes every Monday morning."]
SHARED_TEXT = "The office closes at six on Fridays."


def _store(caller, text: str, **fields) -> str:
    response = caller.post("/api/v1/memories", {"content": text, **fields})
    assert response.status_code == 201, response.content
    return response.json()["id"]


@pytest.fixture
def filled(agent, outsider) -> dict[str, list[str]]:
    alpha_ids = [_store(agent, text, tags=["ops"]) for text in ALPHA_TEXTS]
    alpha_dup = _store(agent, SHARED_TEXT)
    beta_own = _store(outsider, SHARED_TEXT)
    return {"alpha": alpha_ids, "alpha_dup": [alpha_dup], "beta": [beta_own]}


def _merge(system_admin, body=None, slug="alpha"):
    return system_admin.post(f"/api/v1/namespaces/{slug}/merge-into",
                             {"target": "beta"} if body is None else body)


def test_only_a_system_admin_may_merge_and_bad_input_changes_nothing(
        filled, team_admin, outsider, system_admin):
    assert _merge(team_admin).status_code == 403
    assert _merge(outsider).status_code in (403, 404)
    for body, field in (({}, "target"), ({"target": 7}, "target"), ({"target": "alpha"}, "target"),
                        ({"target": "beta", "dry_run": "yes"}, "dry_run"),
                        ({"target": "beta", "extra": 1}, "extra")):
        response = _merge(system_admin, body)
        assert response.status_code == 400, (body, response.content)
        assert field in response.content.decode()
    assert _merge(system_admin, {"target": "nowhere"}).status_code == 404
    assert Memory.objects.filter(namespace__slug="alpha").count() == 5
    assert Namespace.objects.get(slug="alpha").archived_at is None
    assert not NamespaceMerge.objects.exists()


def test_a_dry_run_reports_and_changes_nothing(filled, system_admin, agent):
    response = _merge(system_admin, {"target": "beta", "dry_run": True})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["dry_run"] is True and body["memories"] == 5 and body["duplicates"] == 1
    assert body["refused"] is None
    assert body["keys_revoked"] == [str(agent.key.pk)]
    assert Namespace.objects.get(slug="alpha").archived_at is None
    assert ApiKey.objects.get(pk=agent.key.pk).revoked_at is None
    assert not NamespaceMerge.objects.exists()


def test_merge_moves_every_memory_with_its_id_and_history(filled, system_admin, agent, outsider,
                                                          embed_calls):
    before_versions = {pk: MemoryVersion.objects.filter(memory_id=pk).count()
                       for pk in filled["alpha"]}
    embed_calls.clear()
    response = _merge(system_admin)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == "done" and body["moved"] == 5 and body["duplicates"] == 1
    assert embed_calls == []  # the stored vectors moved: nothing re-embedded
    moved = Memory.objects.filter(pk__in=filled["alpha"] + filled["alpha_dup"])
    assert {m.namespace.slug for m in moved} == {"beta"}
    for pk in filled["alpha"]:  # a version row records the move
        versions = MemoryVersion.objects.filter(memory_id=pk).order_by("version")
        assert versions.count() == before_versions[pk] + 1
        assert versions.last().changes == {"namespace_slug": {"before": "alpha", "after": "beta"}}
    # The duplicate is superseded by beta's own copy, not lost.
    dup = Memory.objects.get(pk=filled["alpha_dup"][0])
    assert str(dup.superseded_by_id) == filled["beta"][0]
    # beta's agent recalls and lists the moved memories (keyword and vector channels).
    for mode in ("lexical", "vector", "hybrid"):
        recalled = outsider.post("/api/v1/recall", {"query": "when is the deploy window",
                                                    "mode": mode}).json()
        assert recalled["results"][0]["id"] == filled["alpha"][0], (mode, recalled)
    tagged = outsider.get("/api/v1/memories", {"tag": "ops"}).json()
    assert {m["id"] for m in tagged["results"]} == set(filled["alpha"])
    listed = {m["id"] for m in outsider.get("/api/v1/memories").json()["results"]}
    assert filled["alpha_dup"][0] not in listed  # superseded: out of default lists
    # Nothing of alpha's is left in alpha's stores.
    alpha = Namespace.objects.get(slug="alpha")
    assert alpha.archived_at is not None
    assert not Memory.objects.filter(namespace=alpha).exists()
    assert lexical.held(alpha.pk, filled["alpha"]) == 0
    assert get_vector_store().count(alpha) == 0
    assert get_vector_store().count(Namespace.objects.get(slug="beta")) == 6
    # Alpha's key is revoked: it gets nothing any more.
    assert agent.post("/api/v1/recall", {"query": "deploy window"}).status_code == 401
    operations = list(AuditEntry.objects.filter(operation__startswith="namespace.merge")
                      .values_list("operation", flat=True))
    assert operations.count("namespace.merge") == 1
    assert "namespace.merge_batch" in operations and "namespace.merged" in operations


def test_grants_to_and_from_the_source_are_revoked_and_reported(filled, system_admin, team_admin):
    other = Namespace.objects.create(slug="gamma", name="Gamma")
    given = SharingGrant.objects.create(grantor=Namespace.objects.get(slug="alpha"), grantee=other)
    taken = SharingGrant.objects.create(grantor=other, grantee=Namespace.objects.get(slug="alpha"))
    body = _merge(system_admin).json()
    assert sorted(body["report"]["grants_revoked"]) == sorted([given.pk, taken.pk])
    assert not SharingGrant.objects.live().filter(pk__in=[given.pk, taken.pk]).exists()
    assert body["report"]["source_members"] == []
    # The archived source refuses writes; its team admin may no longer write there.
    assert team_admin.post("/api/v1/memories", {"content": "late"}).status_code in (401, 409)


def test_seed_numbers_are_left_behind_and_the_target_numbers_its_own(filled, system_admin,
                                                                     outsider):
    alpha = Namespace.objects.get(slug="alpha")
    ExternalId.objects.create(namespace=alpha, system=ExternalId.System.CMM, external_id="1",
                              memory_id=filled["alpha"][0])
    ExternalId.objects.create(namespace=alpha, system=ExternalId.System.MEM0,
                              external_id="m-1", memory_id=filled["alpha"][1], imported=True)
    assert _merge(system_admin).status_code == 200
    assert not ExternalId.objects.filter(system="cmm", memory_id=filled["alpha"][0]).exists()
    kept = ExternalId.objects.get(memory_id=filled["alpha"][1])
    assert kept.namespace.slug == "beta"


def test_a_merge_resumes_after_its_last_committed_batch(filled, system_admin, settings):
    settings.MEMORYWEB_NAMESPACE_MERGE_BATCH = 2
    principal = Principal.for_key(system_admin.key)
    merge = namespace_merge.start(principal, "alpha", "beta")
    token = namespace_merge._claim(merge.pk)
    assert namespace_merge._step(merge.pk, token, None)  # one batch, then the worker dies
    merge.refresh_from_db()
    assert merge.moved == 2 and merge.state == "running"
    NamespaceMerge.objects.filter(pk=merge.pk).update(heartbeat_at=merge.created_at.replace(
        year=2000))
    assert namespace_merge.run(merge.pk) == "done"
    merge.refresh_from_db()
    assert merge.moved == 5 and merge.items.count() == 5
    assert not Memory.objects.filter(namespace__slug="alpha").exists()


def test_a_large_source_is_merged_by_a_job(filled, system_admin):
    with override_settings(MEMORYWEB_NAMESPACE_MERGE_INLINE_MAX=2):
        response = _merge(system_admin)
    assert response.status_code == 202, response.content
    merge_id = response.json()["id"]
    assert response.json()["state"] == "queued" and response.json()["moved"] == 0
    assert response["Location"].endswith(f"/api/v1/namespace-merges/{merge_id}")
    run_namespace_merge.call_local(merge_id)  # what huey's worker runs
    status = system_admin.get(f"/api/v1/namespace-merges/{merge_id}").json()
    assert status["state"] == "done" and status["moved"] == 5
    assert namespace_merge.resume_stalled() == []


def test_revert_moves_the_memories_back_and_unarchives_the_source(filled, system_admin, outsider):
    merge_id = _merge(system_admin).json()["id"]
    assert outsider.get("/api/v1/namespace-merges/" + merge_id).status_code == 403
    response = system_admin.post(f"/api/v1/namespace-merges/{merge_id}/revert")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "reverted"
    alpha = Namespace.objects.get(slug="alpha")
    assert alpha.archived_at is None
    assert set(Memory.objects.filter(namespace=alpha).values_list("pk", flat=True).iterator()) \
        == {Memory.objects.get(pk=pk).pk for pk in filled["alpha"] + filled["alpha_dup"]}
    assert Memory.objects.get(pk=filled["alpha_dup"][0]).superseded_by_id is None
    assert get_vector_store().count(alpha) == 5
    # The keyword index is back in alpha (on PostgreSQL it is a column of the row:
    # asked through recall, as a client would).
    reader = make_caller(Role.READER, alpha, "reader-after")
    for mode in ("lexical", "vector"):
        found = reader.post("/api/v1/recall", {"query": "when is the deploy window",
                                               "mode": mode}).json()["results"]
        assert found and found[0]["id"] == filled["alpha"][0], (mode, found)
    assert system_admin.post(f"/api/v1/namespace-merges/{merge_id}/revert").status_code == 409
    for unknown in ("0", "00000000-0000-0000-0000-000000000000"):
        assert system_admin.get(f"/api/v1/namespace-merges/{unknown}").status_code == 404
        assert system_admin.post(f"/api/v1/namespace-merges/{unknown}/revert").status_code == 404


def test_a_merged_namespace_can_be_deleted(filled, system_admin):
    merge_id = _merge(system_admin).json()["id"]
    assert system_admin.delete("/api/v1/namespaces/alpha").status_code == 204
    assert not NamespaceMerge.objects.filter(pk=merge_id).exists()
    assert Memory.objects.filter(namespace__slug="beta").count() == 6


def test_erasing_a_moved_memory_in_the_target_is_certified(filled, system_admin, outsider):
    assert _merge(system_admin).status_code == 200
    beta_admin = make_caller(Role.ADMIN, Namespace.objects.get(slug="beta"), "beta-admin")
    certificate = erase_through_requests(beta_admin, system_admin, {"ids": [filled["alpha"][1]]})
    assert all(check["ok"] for check in certificate["verification"].values()), certificate
    assert certificate["verification"]["namespace_merges"] == {"remaining": 0, "ok": True}
    assert not NamespaceMergeItem.objects.filter(memory_id=filled["alpha"][1]).exists()
    assert not Memory.objects.filter(pk=filled["alpha"][1]).exists()


def test_the_command_merges_resumes_and_reverts(filled, system_admin):
    out = StringIO()
    call_command("merge_namespace", "alpha", "beta", "--dry-run", stdout=out)
    assert json.loads(out.getvalue())["memories"] == 5
    assert Namespace.objects.get(slug="alpha").archived_at is None
    out = StringIO()
    call_command("merge_namespace", "alpha", "beta", stdout=out)
    assert "5 memories moved from alpha into beta (1 duplicates" in out.getvalue()
    merge = NamespaceMerge.objects.get()
    with pytest.raises(CommandError, match="done"):
        call_command("merge_namespace", "--resume", str(merge.pk), stdout=StringIO())
    call_command("merge_namespace", "--revert", str(merge.pk), stdout=StringIO())
    assert Memory.objects.filter(namespace__slug="alpha").count() == 5
    with pytest.raises(CommandError, match="merged into itself"):
        call_command("merge_namespace", "alpha", "alpha", stdout=StringIO())


def test_every_registered_store_says_how_a_move_carries_it():
    """A store added to the registry must say what a namespace merge does with it: one
    left behind would keep moved text where no erasure of the target looks."""
    assert set(MOVE_HANDLING) == {store.name for store in stores.stores()}
    assert all(MOVE_HANDLING.values())


def test_revert_cuts_lineage_made_in_the_target_meanwhile(filled, system_admin):
    merge_id = _merge(system_admin).json()["id"]
    beta_admin = make_caller(Role.ADMIN, Namespace.objects.get(slug="beta"), "beta-admin")
    beta_agent = make_caller(Role.AGENT, Namespace.objects.get(slug="beta"), "agent-1")
    near = _store(beta_agent, "Note: the staging database runs on PostgreSQL 15 (host db-2).",
                  tags=["ops"])  # the same agent: consolidation merges within an agent
    body = beta_admin.post("/api/v1/namespaces/beta/consolidate",
                           {"dry_run": False, "threshold": 0.85}).json()
    together = {frozenset(p["members"]) for p in body["proposals"]}
    assert frozenset({filled["alpha"][1], near}) in together, body
    assert system_admin.post(f"/api/v1/namespace-merges/{merge_id}/revert").status_code == 200
    for pk in (filled["alpha"][1], near):
        memory = Memory.objects.get(pk=pk)
        assert memory.superseded_by_id is None, pk
    assert not MemoryLink.objects.filter(namespace__slug="alpha").filter(
        target_id=near).exists()
    assert not MemoryLink.objects.filter(source_id=near).exists()
    assert Memory.objects.get(pk=near).namespace.slug == "beta"


def test_a_source_with_an_erasure_in_flight_is_not_merged(filled, system_admin, team_admin):
    created = team_admin.post("/api/v1/erasure-requests", {"ids": [filled["alpha"][0]],
                                                           "reason": "ticket 9"})
    assert created.status_code == 201, created.content
    dry = _merge(system_admin, {"target": "beta", "dry_run": True}).json()
    assert "erasure request" in dry["refused"]
    response = _merge(system_admin)
    assert response.status_code == 409 and "erasure request" in response.json()["error"]["message"]
    assert Namespace.objects.get(slug="alpha").archived_at is None
    assert not NamespaceMerge.objects.exists()


def test_as_of_before_the_move_reads_the_moved_memory(filled, system_admin, outsider):
    before = timezone.now().isoformat()
    assert _merge(system_admin).status_code == 200
    response = outsider.get(f"/api/v1/memories/{filled['alpha'][0]}", {"as_of": before})
    assert response.status_code == 200, response.content
    assert response.json()["content"] == ALPHA_TEXTS[0]


def test_a_failed_merge_is_resumed_and_finishes(filled, system_admin, monkeypatch):
    store = type(get_vector_store())
    real = store.embeddings
    calls = []

    def failing_once(self, namespace, ids):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("Chroma is down")
        return real(self, namespace, ids)

    monkeypatch.setattr(store, "embeddings", failing_once)
    body = _merge(system_admin).json()
    assert body["state"] == "failed" and "Chroma is down" in body["error"]
    assert _merge(system_admin, slug="beta", body={"target": "alpha"}).status_code == 409
    NamespaceMerge.objects.filter(pk=body["id"]).update(heartbeat_at=timezone.now().replace(
        year=2000))
    assert namespace_merge.resume_stalled() == [body["id"]]  # queued for the worker
    assert namespace_merge.run(body["id"]) == "done"
    assert Memory.objects.filter(namespace__slug="beta").count() == 6


def test_track_records_join_the_target_and_revert_is_one_at_a_time(filled, system_admin):
    merge_id = _merge(system_admin).json()["id"]
    record = AgentRecord.objects.get(namespace__slug="beta", agent_id="agent-1")
    assert record.stored == 5
    NamespaceMerge.objects.filter(pk=merge_id).update(lease="someone")
    assert system_admin.post(f"/api/v1/namespace-merges/{merge_id}/revert").status_code == 409
    NamespaceMerge.objects.filter(pk=merge_id).update(lease="")
    reverted = system_admin.post(f"/api/v1/namespace-merges/{merge_id}/revert").json()
    assert reverted["report"]["moved_back"] == 5


def test_the_forgetting_list_never_shows_a_memory_that_moved_away(filled, system_admin,
                                                                   settings):
    from apps.lifecycle import forgetting
    from apps.lifecycle.models import WeakMemory

    merge_id = _merge(system_admin).json()["id"]
    beta = Namespace.objects.get(slug="beta")
    WeakMemory.objects.create(namespace=beta, memory_id=filled["alpha"][0], strength=0.1,
                              below_since=timezone.now(), checked_at=timezone.now(),
                              state="proposed")
    assert system_admin.post(f"/api/v1/namespace-merges/{merge_id}/revert").status_code == 200
    beta_admin = make_caller(Role.ADMIN, beta, "beta-admin")
    assert beta_admin.get("/api/v1/namespaces/beta/forgetting").json()["count"] == 0
    forgetting.review(Namespace.objects.get(slug="alpha"))
    assert not WeakMemory.objects.filter(namespace=beta, memory_id=filled["alpha"][0]).exists()


def test_a_store_that_passed_the_archive_check_before_a_merge_archived_is_refused(
        filled, system_admin, agent, monkeypatch):
    """The write path checks the namespace again inside its own transaction: a store whose
    request-time checks (its key, the archive) ran before the merge archived the source and
    revoked its keys (a slow embedding, say) cannot commit into the archived source after
    the merge's last look."""
    from apps.core.errors import Conflict
    from apps.memories import services
    from apps.memories.services import building

    in_flight = Principal.for_key(agent.key)  # authenticated before the merge
    merge_id = _merge(system_admin).json()["id"]
    assert NamespaceMerge.objects.get(pk=merge_id).state == "done"
    before = Memory.objects.count()
    monkeypatch.setattr(building, "check_writable", lambda ns: None)  # checked "earlier"
    with pytest.raises(Conflict) as refused:
        services.ingest(in_flight, {"content": "written after the last check"})
    assert refused.value.field == "namespace" and "archived" in refused.value.message
    assert Memory.objects.count() == before
    assert not Memory.objects.filter(namespace__slug="alpha").exists()


def test_a_large_revert_runs_as_a_job_and_resumes_when_its_worker_stops(filled, system_admin):
    from apps.lifecycle.tasks import run_namespace_merge_revert

    merge_id = _merge(system_admin).json()["id"]
    with override_settings(MEMORYWEB_NAMESPACE_MERGE_INLINE_MAX=2):
        response = system_admin.post(f"/api/v1/namespace-merges/{merge_id}/revert")
    assert response.status_code == 202, response.content
    assert response.json()["state"] == "reverting"
    assert response["Location"].endswith(f"/api/v1/namespace-merges/{merge_id}")
    started = AuditEntry.objects.get(operation="namespace.merge_revert_started")
    assert started.record_ids == [merge_id] and started.summary["memories"] == 5
    alpha = Namespace.objects.get(slug="alpha")
    assert alpha.archived_at is not None  # still archived until the memories are back
    # A second revert, or a new merge involving the target, waits for this one.
    assert system_admin.post(f"/api/v1/namespace-merges/{merge_id}/revert").status_code == 409
    # The worker dies before its first batch: the sweep takes it up once its beat is stale.
    NamespaceMerge.objects.filter(pk=merge_id).update(
        heartbeat_at=timezone.now().replace(year=2000))
    assert namespace_merge.resume_stalled() == [merge_id]
    run_namespace_merge_revert.call_local(merge_id)  # what huey's worker runs
    status = system_admin.get(f"/api/v1/namespace-merges/{merge_id}").json()
    assert status["state"] == "reverted" and status["report"]["moved_back"] == 5
    alpha.refresh_from_db()
    assert alpha.archived_at is None
    assert Memory.objects.filter(namespace=alpha).count() == 5
    done = AuditEntry.objects.get(operation="namespace.merge_revert")
    assert done.actor == started.actor  # the job acts as who asked
    assert namespace_merge.run_revert(merge_id) is None  # nothing left to take up
    assert namespace_merge.resume_stalled() == []
