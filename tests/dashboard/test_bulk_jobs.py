"""Bulk work as jobs (issue 17, item 7): small selections act within the request, large
ones become a job row run in batches by the worker; the job resumes after a restart
without doing anything twice, asks again whether its starter may act, is 404 to other
tenants, and a tags-only job embeds nothing."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.memories import bulk_jobs, services
from apps.memories.bulk_models import BulkJob
from apps.memories.models import IndexOutbox, Memory
from apps.tenancy.members import set_role
from apps.tenancy.principal import Principal

LIST = "/admin/memories/memory/"


@pytest.fixture(autouse=True)
def small_jobs(settings):
    """Jobs above 5 memories, in batches of 4 (a 10-memory selection: 4 + 4 + 2)."""
    settings.MEMORYWEB_DASHBOARD_BULK_INLINE_MAX = 5
    settings.MEMORYWEB_DASHBOARD_BULK_BATCH = 4


@pytest.fixture
def queued(monkeypatch) -> list[str]:
    """Job ids handed to huey (here recorded; the tests run the worker's function)."""
    ids: list[str] = []
    monkeypatch.setattr(bulk_jobs, "enqueue", lambda job_id: ids.append(str(job_id)))
    return ids




@pytest.fixture
def batch_sizes(monkeypatch) -> list[int]:
    """Memories per retag_many call."""
    sizes: list[int] = []
    real = services.retag_many

    def spy(principal, ids, **kwargs):
        sizes.append(len(ids))
        return real(principal, ids, **kwargs)

    monkeypatch.setattr(services, "retag_many", spy)
    return sizes


def _ten(namespace, agent: str = "agent-1", tags=("old",)) -> list[Memory]:
    agent_principal = Principal(label=f"key:{agent}", agent_id=agent, role=Role.AGENT,
                                namespace_id=namespace.pk, namespace=namespace)
    return [result.memory for result in services.ingest_many(agent_principal, [
        {"content": f"Note {i} from {agent} about the {namespace.slug} rollout.", "tags": list(tags)}
        for i in range(10)])]


def _retag_all(client, url: str = LIST, **fields):
    """"Select all" on the list (``select_across``), confirmed."""
    first = Memory.objects.order_by("pk").values_list("pk", flat=True).first()
    return client.post(url, {"action": "retag", "select_across": "1", "index": "0",
                             "_selected_action": [str(first)], "apply": "1", **fields})


def _tagged(tag: str) -> int:
    return sum(tag in tags for tags in Memory.objects.values_list("tags", flat=True))


def _job() -> BulkJob:
    return BulkJob.objects.get()


def test_a_small_selection_acts_within_the_request(alice, alpha, queued):
    chosen = _ten(alpha)[:5]
    page = alice.post(LIST, {"action": "retag", "_selected_action": [str(m.pk) for m in chosen],
                             "apply": "1", "add": "new"}, follow=True)
    assert b"5 memories re-tagged." in page.content
    assert not BulkJob.objects.exists() and queued == []
    assert {tuple(m.tags) for m in Memory.objects.filter(pk__in=[m.pk for m in chosen])} == {("old", "new")}


def test_a_large_selection_becomes_a_job_run_in_batches_without_embedding(
        alice, alpha, queued, embed_calls, batch_sizes, django_capture_on_commit_callbacks):
    memories = _ten(alpha)
    embed_calls.clear()
    confirm = alice.post(LIST, {"action": "retag", "select_across": "1", "index": "0",
                                "_selected_action": [str(memories[0].pk)]}).content.decode()
    assert 'id="bulk-as-job"' in confirm and "More than 5 memories" in confirm
    assert 'name="select_across" value="1"' in confirm
    assert confirm.count('name="_selected_action"') == 1  # not one field per memory
    with django_capture_on_commit_callbacks(execute=True):  # queued once the row is committed
        started = _retag_all(alice, add="reviewed", remove="old")
    job = _job()
    assert started.status_code == 302 and started["Location"] == f"/admin/memories/bulkjob/{job.pk}/change/"
    assert (job.state, job.total, job.done, job.action) == ("queued", 10, 0, "retag")
    assert job.params == {"add": ["reviewed"], "remove": ["old"]} and queued == [str(job.pk)]
    assert job.targets == sorted(str(m.pk) for m in memories)
    assert (job.started_by_label, job.started_role) == ("user:alice", "admin")
    assert list(job.namespaces.values_list("slug", flat=True)) == ["alpha"]
    assert all(m.tags == ["old"] for m in Memory.objects.all())  # nothing yet

    assert bulk_jobs.run(job.pk) == "done"
    job.refresh_from_db()
    assert batch_sizes == [4, 4, 2] and job.batches == 3
    assert (job.done, job.changed, job.refused, job.lease, job.percent) == (10, 10, 0, "", 100)
    assert {tuple(m.tags) for m in Memory.objects.all()} == {("reviewed",)}
    assert set(Memory.objects.values_list("version", flat=True)) == {2}
    assert AuditEntry.objects.filter(operation="memory.update", actor="user:alice").count() == 10
    assert embed_calls == []  # tags are not embedded: nothing re-embedded
    assert not IndexOutbox.objects.exists()  # the metadata ops were written to the index
    assert bulk_jobs.run(job.pk) is None  # finished: a second task does nothing


def test_select_all_keeps_the_lists_filters(alice, alpha, queued):
    _ten(alpha, tags=("old",))
    others = _ten(alpha, agent="agent-2", tags=("keep",))
    _retag_all(alice, url=f"{LIST}?tag=old", add="new")
    job = _job()
    assert job.total == 10 and not set(job.targets) & {str(m.pk) for m in others}


def test_change_kind_runs_as_a_job(alice, alpha, queued):
    _ten(alpha)
    first = str(Memory.objects.first().pk)
    alice.post(LIST, {"action": "change_kind", "select_across": "1", "index": "0",
                      "_selected_action": [first], "apply": "1", "kind": "procedure"})
    job = _job()
    assert (job.action, job.params) == ("change_kind", {"kind": "procedure"})
    assert bulk_jobs.run(job.pk) == "done"
    assert set(Memory.objects.values_list("kind", flat=True)) == {"procedure"}
    page = alice.get(f"/admin/memories/bulkjob/{job.pk}/change/").content.decode()
    assert "10 memories changed to procedure." in page


class WorkerKilled(BaseException):
    """A worker process dying mid-batch (not an error the job could record)."""


def test_a_restart_midway_continues_after_the_last_batch_and_does_nothing_twice(
        alice, alpha, queued, monkeypatch, embed_calls):
    _ten(alpha)
    embed_calls.clear()
    _retag_all(alice, add="reviewed", remove="old")
    job = _job()
    real, calls = services.retag_many, []

    def dies_in_the_second_batch(principal, ids, **kwargs):
        calls.append(len(ids))
        result = real(principal, ids, **kwargs)  # the batch's changes are made...
        if len(calls) == 2:
            raise WorkerKilled  # ...and the process dies before its commit
        return result

    monkeypatch.setattr(services, "retag_many", dies_in_the_second_batch)
    with pytest.raises(WorkerKilled):
        bulk_jobs.run(job.pk)
    job.refresh_from_db()
    assert (job.state, job.cursor, job.done, job.changed, job.batches) == ("running", 4, 4, 4, 1)
    assert Memory.objects.filter(version=2).count() == 4  # the second batch rolled back whole
    monkeypatch.setattr(services, "retag_many", real)

    assert bulk_jobs.run(job.pk) is None  # its lease looks alive: nobody takes it over yet
    assert bulk_jobs.resume_stalled() == []
    BulkJob.objects.filter(pk=job.pk).update(heartbeat_at=job.heartbeat_at.replace(year=2000))
    queued.clear()
    assert bulk_jobs.resume_stalled() == [str(job.pk)] and queued == [str(job.pk)]
    assert bulk_jobs.run(job.pk) == "done"  # the restarted worker's task
    job.refresh_from_db()
    assert (job.done, job.changed, job.batches, job.cursor) == (10, 10, 3, 10)
    assert set(Memory.objects.values_list("version", flat=True)) == {2}  # once each
    assert AuditEntry.objects.filter(operation="memory.update").count() == 10
    assert embed_calls == []


def test_an_error_is_retried_then_fails_the_job(alice, alpha, queued, monkeypatch):
    _ten(alpha)
    _retag_all(alice, add="new")
    job = _job()

    def broken(*args, **kwargs):
        raise RuntimeError("index unreachable")

    monkeypatch.setattr(services, "retag_many", broken)
    assert bulk_jobs.run(job.pk) == "running"
    job.refresh_from_db()
    assert job.lease == "" and job.attempts == 1 and "index unreachable" in job.error
    assert bulk_jobs.resume_stalled() == [str(job.pk)]
    bulk_jobs.run(job.pk)
    assert bulk_jobs.run(job.pk) == "failed"
    job.refresh_from_db()
    assert job.attempts == bulk_jobs.MAX_ATTEMPTS and job.error.startswith("Failed after 3 attempts")
    assert bulk_jobs.resume_stalled() == []


def test_the_starters_role_is_checked_again_before_every_batch(alice, alpha, queued, monkeypatch):
    set_role(alpha, get_user_model().objects.create_user("dora"), Role.ADMIN)
    _ten(alpha)
    _retag_all(alice, add="reviewed")
    job = _job()
    real = services.retag_many

    def demoted_after_the_first_batch(principal, ids, **kwargs):
        result = real(principal, ids, **kwargs)
        set_role(alpha, get_user_model().objects.get(username="alice"), Role.READER)
        return result

    monkeypatch.setattr(services, "retag_many", demoted_after_the_first_batch)
    assert bulk_jobs.run(job.pk) == "failed"
    job.refresh_from_db()
    assert job.error == "Stopped: user:alice may no longer edit memories in alpha."
    assert (job.done, job.changed, job.batches) == (4, 4, 1)
    assert _tagged("reviewed") == 4


def test_a_deactivated_starter_stops_the_job(alice, alpha, queued):
    _ten(alpha)
    _retag_all(alice, add="reviewed")
    get_user_model().objects.filter(username="alice").update(is_active=False)
    assert bulk_jobs.run(_job().pk) == "failed"
    assert _job().error == "Stopped: user:alice no longer has an active account."
    assert _tagged("reviewed") == 0


def test_forget_agents_runs_in_batches_and_needs_a_system_admin_at_run_time(
        root, alpha, beta, queued):
    _ten(alpha, agent="leaver")
    keep = _ten(alpha, agent="stays")[:1] + _ten(beta, agent="leaver")[:1]
    chosen = Memory.objects.filter(agent_id="leaver", namespace=alpha).first()
    started = root.post(LIST, {"action": "forget_agents", "_selected_action": [str(chosen.pk)],
                               "apply": "1", "typed": "leaver"})
    job = _job()
    assert started.status_code == 302 and (job.action, job.total) == ("forget_agents", 10)
    assert job.targets == [["leaver", "alpha"]] and job.started_role == "system"
    assert Memory.objects.filter(agent_id="leaver", namespace=alpha).count() == 10
    assert bulk_jobs.run(job.pk) == "done"
    job.refresh_from_db()
    assert (job.done, job.changed, job.result) == (10, 10, {"leaver in alpha": 10})
    assert not Memory.objects.filter(agent_id="leaver", namespace=alpha).exists()
    assert all(Memory.objects.filter(pk=m.pk).exists() for m in keep)  # other agent, other tenant
    counts = [e.summary["count"] for e in AuditEntry.objects.filter(
        operation="memory.delete_by_agent").order_by("seq")]
    assert counts == [4, 4, 2]  # a batch per transaction, each audited

    _ten(alpha, agent="second")
    root.post(LIST, {"action": "forget_agents", "_selected_action": [
        str(Memory.objects.filter(agent_id="second").first().pk)], "apply": "1", "typed": "second"})
    second = BulkJob.objects.get(targets=[["second", "alpha"]])
    get_user_model().objects.filter(username="root").update(is_superuser=False)
    assert bulk_jobs.run(second.pk) == "failed"
    assert "no longer a system admin" in BulkJob.objects.get(pk=second.pk).error
    assert Memory.objects.filter(agent_id="second").count() == 10


def test_the_progress_page_status_and_result(alice, alpha, queued):
    _ten(alpha)
    _retag_all(alice, add="reviewed", remove="old")
    job = _job()
    url = f"/admin/memories/bulkjob/{job.pk}/"
    page = alice.get(url + "change/").content.decode()
    assert '<progress id="mw-job-progress" max="10" value="0"' in page
    assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in page
    assert "dashboard/jobs.js" in page and f'data-status-url="{url}status/"' in page
    assert "Re-tag 10 memories: add reviewed; remove old" in page and 'id="mw-job-cancel"' in page
    status = alice.get(url + "status/")
    assert status["Content-Type"] == "application/json" and "no-cache" in status["Cache-Control"]
    assert json.loads(status.content) | {"id": ""} == {
        "id": "", "state": "queued", "state_label": "Queued", "finished": False, "done": 0,
        "total": 10, "percent": 0, "changed": 0, "refused": 0, "batches": 0,
        "count_text": "0 of 10"}
    bulk_jobs.run(job.pk)
    assert json.loads(alice.get(url + "status/").content)["percent"] == 100
    result = alice.get(url + "change/").content.decode()
    assert 'id="mw-job-result"' in result and "10 memories re-tagged." in result
    assert "refresh" not in result and "jobs.js" not in result
    assert '<progress id="mw-job-progress" max="10" value="10"' in result
    listing = alice.get("/admin/memories/bulkjob/").content.decode()
    assert "Re-tag 10 memories" in listing and "10 of 10 (100%)" in listing


def test_refusals_are_listed_on_the_result(root, alpha, beta, queued):
    mine = _ten(alpha)
    archived = _ten(beta)[:1]
    beta.archived_at = mine[0].created_at
    beta.save(update_fields=["archived_at"])
    _retag_all(root, add="x")
    job = _job()
    bulk_jobs.run(job.pk)
    job.refresh_from_db()
    assert (job.total, job.changed, job.refused) == (20, 10, 10)
    page = root.get(f"/admin/memories/bulkjob/{job.pk}/change/").content.decode()
    assert "10 memories re-tagged; 10 memories refused." in page
    assert f'href="/admin/memories/memory/{archived[0].pk}/change/"' in page


def test_cancel_stops_the_job(alice, alpha, queued):
    _ten(alpha)
    _retag_all(alice, add="reviewed")
    job = _job()
    assert alice.get(f"/admin/memories/bulkjob/{job.pk}/cancel/").status_code == 302  # GET: no
    assert _job().state == "queued"
    alice.post(f"/admin/memories/bulkjob/{job.pk}/cancel/")
    assert (_job().state, _job().cancelled_by) == ("cancelled", "user:alice")
    assert bulk_jobs.run(job.pk) is None
    assert _tagged("reviewed") == 0


def test_another_tenants_job_is_not_found(alice, bob, root, alpha, beta, queued):
    _ten(alpha)
    _retag_all(alice, add="reviewed")
    job = _job()
    base = f"/admin/memories/bulkjob/{job.pk}/"
    for path in ("change/", "status/"):
        assert bob.get(base + path).status_code == 404
        assert root.get(base + path).status_code == 200
    assert bob.post(base + "cancel/").status_code == 404 and _job().state == "queued"
    assert str(job.pk) not in bob.get("/admin/memories/bulkjob/").content.decode()
    assert bob.get("/admin/memories/bulkjob/not-a-uuid/status/").status_code == 404

    _ten(beta)  # root re-tags alpha and beta together: neither team admin alone sees it
    _retag_all(root, add="both")
    both = BulkJob.objects.get(started_by_label="user:root")
    for client in (alice, bob):
        assert client.get(f"/admin/memories/bulkjob/{both.pk}/change/").status_code == 404
    listed = alice.get("/admin/memories/bulkjob/").content.decode()
    assert str(job.pk) in listed and str(both.pk) not in listed
