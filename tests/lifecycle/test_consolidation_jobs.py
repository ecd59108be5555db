"""Large consolidations over REST run as jobs (issue 21 interface: "a job with progress
when large"): above MEMORYWEB_CONSOLIDATE_INLINE_MAX candidates the request answers 202 with
the run to poll; the run's outcome is the one the request would have answered; one run at
a time per namespace; a stalled run is taken up again; erasure reaches stored results."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.lifecycle import consolidation_jobs
from apps.lifecycle.models import ConsolidationRun, ConsolidationRunMember
from apps.lifecycle.tasks import run_consolidation
from apps.memories import stores
from apps.memories.models import Memory
from apps.tenancy.models import ApiKey, Namespace
from tests.helpers.erasure import erase_through_requests

STAGING = ["The staging database runs PostgreSQL 15 on host db-2.",
           "Staging database: PostgreSQL 15, running on host db-2.",
           "Note: the staging database runs on PostgreSQL 15 (host db-2)."]
DEPLOYS = ["Deployments to production happen every Tuesday afternoon.",
           "Production deploys happen on Tuesday afternoons."]
OTHERS = ["The API timeout is 30 seconds.", "The API timeout is 45 seconds.",
          "Our office is closed on public holidays."]
URL = "/api/v1/namespaces/alpha/consolidate"


@pytest.fixture
def corpus(agent) -> dict[str, str]:
    """Content -> id of every memory stored."""
    response = agent.post("/api/v1/memories/batch",
                          {"memories": [{"content": t} for t in STAGING + DEPLOYS + OTHERS]})
    assert response.status_code == 201, response.json()
    return {row["content"]: row["id"] for row in response.json()["results"]}


def _queue(caller, body: dict):
    with override_settings(MEMORYWEB_CONSOLIDATE_INLINE_MAX=3):
        return caller.post(URL, body)


def _groups(outcome: dict) -> set[frozenset[str]]:
    return {frozenset(p["members"]) for p in outcome["proposals"]}


def test_a_small_consolidation_is_answered_within_the_request(team_admin, corpus):
    response = team_admin.post(URL, {"dry_run": True, "threshold": 0.85})
    assert response.status_code == 200, response.json()
    assert "proposals" in response.json() and not ConsolidationRun.objects.exists()


def test_a_large_dry_run_is_a_job_whose_outcome_is_the_requests(team_admin, corpus):
    inline = team_admin.post(URL, {"dry_run": True, "threshold": 0.85}).json()
    response = _queue(team_admin, {"dry_run": True, "threshold": 0.85})
    assert response.status_code == 202, response.json()
    run = response.json()
    assert run["state"] == "queued" and run["dry_run"] is True and run["result"] is None
    assert run["candidates"] == len(corpus)
    assert response["Location"].endswith(f"/api/v1/consolidations/{run['id']}")
    assert team_admin.get(f"/api/v1/consolidations/{run['id']}").json()["state"] == "queued"

    run_consolidation.call_local(run["id"])  # what huey's worker runs
    done = team_admin.get(f"/api/v1/consolidations/{run['id']}").json()
    assert done["state"] == "done" and done["error"] is None and done["finished_at"]
    assert done["progress"]["stage"] and done["progress"]["done"] == done["progress"]["total"]
    result = done["result"]
    assert _groups(result) == _groups(inline) == {frozenset(corpus[t] for t in STAGING),
                                                  frozenset(corpus[t] for t in DEPLOYS)}
    assert {p["survivor"]: p["merged_content"] for p in result["proposals"]} == \
        {p["survivor"]: p["merged_content"] for p in inline["proposals"]}
    assert result["conflicts"] == inline["conflicts"] and result["dry_run"] is True
    # Nothing merged on a dry run; the stored result holds ids, never text.
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()
    stored = ConsolidationRun.objects.get(pk=run["id"]).result
    assert not any("merged_content" in p for p in stored["proposals"])
    assert set(ConsolidationRunMember.objects.values_list("memory_id", flat=True)
               .iterator()) == {Memory.objects.get(pk=pk).pk
                                for pk in consolidation_jobs.named(stored)}


def test_an_applied_job_merges_as_its_requester_with_audit(team_admin, corpus):
    response = _queue(team_admin, {"dry_run": False, "threshold": 0.85})
    assert response.status_code == 202, response.json()
    run_id = response.json()["id"]
    queued = AuditEntry.objects.get(operation="memory.consolidate_queued")
    assert queued.record_ids == [run_id] and queued.summary == {"dry_run": False,
                                                                "candidates": len(corpus)}
    assert consolidation_jobs.run(run_id) == "done"
    result = team_admin.get(f"/api/v1/consolidations/{run_id}").json()["result"]
    assert result["merged"] == 2 and result["superseded"] == 3
    assert all(p["applied"] for p in result["proposals"])
    assert Memory.objects.filter(superseded_by__isnull=False).count() == 3
    merges = AuditEntry.objects.filter(operation="memory.consolidate")
    assert merges.count() == 2 and {e.actor for e in merges} == {queued.actor}


def test_one_run_at_a_time_per_namespace(team_admin, corpus):
    first = _queue(team_admin, {"dry_run": True})
    assert first.status_code == 202
    second = _queue(team_admin, {"dry_run": False})
    assert second.status_code == 409, second.json()
    assert second.json()["error"]["field"] == "namespace"
    assert first.json()["id"] in second.json()["error"]["message"]
    assert ConsolidationRun.objects.count() == 1
    assert AuditEntry.objects.filter(operation="memory.consolidate_queued").count() == 1
    consolidation_jobs.run(first.json()["id"])
    assert _queue(team_admin, {"dry_run": True}).status_code == 202  # free again once done


@pytest.mark.parametrize("body, field", [
    ({"threshold": 2}, "threshold"),
    ({"filters": {"kind": "nonsense"}}, "filters"),
    ({"dry_run": "yes"}, "dry_run"),
    ({"unknown": 1}, "unknown"),
])
def test_bad_input_is_refused_before_anything_is_queued(team_admin, corpus, body, field):
    response = _queue(team_admin, body)
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["field"].startswith(field)
    assert not ConsolidationRun.objects.exists()


def test_roles_and_tenants(team_admin, reader, agent, outsider, corpus):
    for caller in (reader, agent):
        assert _queue(caller, {"dry_run": True}).status_code == 403
    assert _queue(outsider, {"dry_run": True}).status_code == 404
    run_id = _queue(team_admin, {"dry_run": True}).json()["id"]
    assert outsider.get(f"/api/v1/consolidations/{run_id}").status_code == 404
    assert reader.get(f"/api/v1/consolidations/{run_id}").status_code == 403
    assert team_admin.get("/api/v1/consolidations/not-a-uuid").status_code == 404
    assert team_admin.get("/api/v1/consolidations/" + "0" * 32).status_code == 404


def test_a_run_that_fails_says_why(team_admin, corpus):
    run_id = _queue(team_admin, {"dry_run": False}).json()["id"]
    Namespace.objects.filter(slug="alpha").update(archived_at=timezone.now())
    assert consolidation_jobs.run(run_id) == "failed"
    failed = team_admin.get(f"/api/v1/consolidations/{run_id}").json()
    assert failed["state"] == "failed" and "archived" in failed["error"]
    assert failed["result"] is None
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()


def test_a_stalled_run_is_taken_up_again_and_a_held_one_is_not(team_admin, corpus):
    run_id = _queue(team_admin, {"dry_run": True}).json()["id"]
    assert consolidation_jobs.resume_stalled() == []  # queued a moment ago: its task is due
    long_ago = timezone.now() - timedelta(hours=1)
    ConsolidationRun.objects.filter(pk=run_id).update(state="running", lease="dead",
                                                      heartbeat_at=timezone.now())
    assert consolidation_jobs.run(run_id) is None  # held by a live worker
    ConsolidationRun.objects.filter(pk=run_id).update(heartbeat_at=long_ago)
    assert consolidation_jobs.resume_stalled() == [run_id]
    assert consolidation_jobs.run(run_id) == "done"
    ConsolidationRun.objects.filter(pk=run_id).update(created_at=long_ago)
    assert consolidation_jobs.resume_stalled() == []  # done: nothing to take up


@pytest.mark.django_db(transaction=True)
def test_erasing_a_member_removes_it_from_stored_results(team_admin, system_admin, corpus):
    run_id = _queue(team_admin, {"dry_run": True, "threshold": 0.85}).json()["id"]
    consolidation_jobs.run(run_id)
    member = corpus[STAGING[1]]
    certificate = erase_through_requests(team_admin, system_admin,
                                         {"namespace": "alpha", "ids": [member]})
    assert certificate["verification"]["consolidation_runs"] == {"remaining": 0, "ok": True}
    result = team_admin.get(f"/api/v1/consolidations/{run_id}").json()["result"]
    assert _groups(result) == {frozenset(corpus[t] for t in DEPLOYS)}
    assert member not in str(ConsolidationRun.objects.get(pk=run_id).result)
    assert not ConsolidationRunMember.objects.filter(memory_id=member).exists()


@pytest.mark.django_db(transaction=True)
def test_a_memory_erased_while_a_run_works_is_not_in_its_result(team_admin, system_admin,
                                                                corpus, monkeypatch):
    run_id = _queue(team_admin, {"dry_run": True, "threshold": 0.85}).json()["id"]
    member = corpus[STAGING[1]]
    real, certificates = consolidation_jobs._progress, []

    def erasing(run, token, recheck):
        inner = real(run, token, recheck)

        def progress(stage, done, total):
            if stage == "neighbours" and not certificates:  # after the run read its rows
                certificates.append(erase_through_requests(
                    team_admin, system_admin, {"namespace": "alpha", "ids": [member]}))
            inner(stage, done, total)
        return progress

    monkeypatch.setattr(consolidation_jobs, "_progress", erasing)
    assert consolidation_jobs.run(run_id) == "done"
    assert certificates[0]["verification"]["consolidation_runs"]["ok"] is True
    stored = ConsolidationRun.objects.get(pk=run_id).result
    assert member not in str(stored)
    assert not ConsolidationRunMember.objects.filter(memory_id=member).exists()
    # The store's check reads the results themselves: a result naming an erased memory
    # without its row is still found.
    ConsolidationRun.objects.filter(pk=run_id).update(result={
        **stored, "conflicts": [{"members": [member, corpus[DEPLOYS[0]]], "similarity": 0.9,
                                 "differs_in": ["number"]}]})
    erased = stores.Erased(ids=(member,))
    assert consolidation_jobs.RUN_RESULTS.remaining(None, erased) == 1


def test_a_run_whose_requester_lost_the_right_fails_and_merges_nothing(team_admin, corpus):
    run_id = _queue(team_admin, {"dry_run": False, "threshold": 0.85}).json()["id"]
    ApiKey.objects.filter(pk=team_admin.key.pk).update(revoked_at=timezone.now())
    assert consolidation_jobs.run(run_id) == "failed"
    failed = ConsolidationRun.objects.get(pk=run_id)
    assert "revoked" in failed.error
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()
    assert not AuditEntry.objects.filter(operation="memory.consolidate").exists()


def test_a_run_demoted_before_it_merges_fails_at_the_apply_stage(team_admin, corpus):
    run_id = _queue(team_admin, {"dry_run": False, "threshold": 0.85}).json()["id"]
    real = consolidation_jobs._progress

    def demoting(run, token, recheck):
        inner = real(run, token, recheck)

        def progress(stage, done, total):
            if stage == "neighbours":  # read as a team admin; lower the key before merging
                ApiKey.objects.filter(pk=team_admin.key.pk).update(role="reader")
            inner(stage, done, total)
        return progress

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(consolidation_jobs, "_progress", demoting)
        assert consolidation_jobs.run(run_id) == "failed"
    assert "PermissionDenied" in ConsolidationRun.objects.get(pk=run_id).error
    assert not Memory.objects.filter(superseded_by__isnull=False).exists()


def test_a_run_that_keeps_dying_is_given_up(team_admin, corpus):
    run_id = _queue(team_admin, {"dry_run": True}).json()["id"]
    long_ago = timezone.now() - timedelta(hours=1)
    ConsolidationRun.objects.filter(pk=run_id).update(
        state="running", lease="dead", heartbeat_at=long_ago,
        attempts=consolidation_jobs.MAX_ATTEMPTS)
    assert consolidation_jobs.run(run_id) == "failed"
    assert "given up" in ConsolidationRun.objects.get(pk=run_id).error
    assert _queue(team_admin, {"dry_run": True}).status_code == 202  # the namespace is free
