"""Background jobs: pause and resume survive restarts (state in SQL), one run at a time
through a lease a dead run gives up, idempotent resumption of an interrupted job, and
the consumer running inside a real server process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from apps.audit.models import AuditCheckpoint
from apps.memories.models import IndexOutbox, Memory
from apps.ops import jobs
from apps.ops.models import JobState
from apps.privacy.models import ErasureRequest, ErasureState
from apps.privacy.retention import RETENTION
from tests.helpers.embedded import manage, migrate
from tests.servers import ROOT, DaphneServer


def _command(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command("jobs", *args, stdout=out)
    return out.getvalue()


def _status_line(status: str, job: str) -> str:
    return next(line for line in status.splitlines() if line.startswith(job + " "))


@pytest.mark.django_db(transaction=True)  # the audit anchor advances on commit
def test_a_run_records_its_state(agent):
    agent.post("/api/v1/memories", {"content": "Audited write."})
    result = jobs.run_job("audit_checkpoint")
    assert result["ok"] is True and result["verified"] >= 1
    state = JobState.objects.get(name="audit_checkpoint")
    assert (state.runs, state.failures, state.last_outcome, state.running_since) == (1, 0, "ok", None)
    assert state.last_result == result


def test_pause_and_resume_through_the_command(agent):
    assert "paused" in _command("pause", "drain_outbox")
    assert JobState.objects.get(name="drain_outbox").paused  # in SQL: survives restarts
    assert jobs.run_job("drain_outbox") is None
    status = _command("status")
    assert "drain_outbox" in status and "paused" in status and "expire_memories" in status
    assert "active" in _command("resume", "drain_outbox")
    assert jobs.run_job("drain_outbox") == {"backlog_before": 0, "backlog_after": 0}
    assert "drain_outbox: ok" in _command("run", "drain_outbox")
    with pytest.raises(Exception, match="name a job"):
        _command("pause", "nope")


def test_one_run_at_a_time_and_a_dead_runs_lease_is_taken_over(db):
    JobState.objects.create(name="drain_outbox", running_since=timezone.now(), running_on="other:1")
    assert jobs.run_job("drain_outbox") is None  # held by a live run elsewhere
    JobState.objects.filter(name="drain_outbox").update(
        running_since=timezone.now() - timedelta(hours=1))  # that worker was killed
    assert jobs.run_job("drain_outbox") is not None
    assert JobState.objects.get(name="drain_outbox").running_since is None


def test_a_killed_runs_lease_is_taken_over_once_its_heartbeat_is_stale(db, settings):
    settings.MEMORYWEB_JOB_HEARTBEAT_SECONDS = 30
    now = timezone.now()
    JobState.objects.create(name="expire_memories", running_since=now - timedelta(minutes=5),
                            running_on="killed:1", lease="dead", heartbeat_at=now)
    assert jobs.run_job("expire_memories") is None  # beating: alive, within its 2 h timeout
    JobState.objects.filter(name="expire_memories").update(
        heartbeat_at=now - timedelta(minutes=3))  # four beats missed: that worker died
    assert jobs.run_job("expire_memories") is not None
    state = JobState.objects.get(name="expire_memories")
    assert (state.running_since, state.lease, state.heartbeat_at) == (None, "", None)


@pytest.mark.django_db(transaction=True)
def test_a_long_run_keeps_its_lease_beating(settings, monkeypatch):
    """While a run works its heartbeat advances, so no other worker takes the job."""
    settings.MEMORYWEB_JOB_HEARTBEAT_SECONDS = 0.5  # stale after 2 s
    seen: dict = {}

    def long_job() -> dict:
        first = JobState.objects.get(name="drain_outbox").heartbeat_at
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the heartbeat thread has renewed it
            current = JobState.objects.get(name="drain_outbox").heartbeat_at
            if current > first:
                break
            time.sleep(0.02)
        seen["renewed"] = current > first
        # A second worker now: the run is older than 4 beats, but its heartbeat is fresh.
        JobState.objects.filter(name="drain_outbox").update(
            running_since=timezone.now() - timedelta(seconds=1))
        seen["second"] = jobs.run_job("drain_outbox")
        return {}

    monkeypatch.setitem(jobs.JOBS, "drain_outbox", jobs.Job(
        "drain_outbox", "test", "never", long_job))
    assert jobs.run_job("drain_outbox") == {}
    assert seen == {"renewed": True, "second": None}
    assert JobState.objects.get(name="drain_outbox").heartbeat_at is None


def test_a_run_that_lost_its_lease_leaves_the_new_holders_alone(db, monkeypatch):
    """A run that outlived its timeout was taken over; when it finally finishes it records
    itself but must not clear the lease of the run that took over."""
    def slow_and_overtaken() -> dict:
        JobState.objects.filter(name="drain_outbox").update(
            running_since=timezone.now(), running_on="other:2", lease="the-new-holder")
        return {"ok": True}

    monkeypatch.setitem(jobs.JOBS, "drain_outbox", jobs.Job(
        "drain_outbox", "test", "never", slow_and_overtaken))
    jobs.run_job("drain_outbox")
    state = JobState.objects.get(name="drain_outbox")
    assert (state.lease, state.running_on, state.runs) == ("the-new-holder", "other:2", 1)
    assert state.running_since is not None


def test_one_namespace_failing_does_not_stop_retention_elsewhere(agent, alpha, beta, monkeypatch):
    from apps.privacy import retention

    real = retention.expire

    def expire(namespace, **kwargs):
        if namespace.slug == "alpha":
            raise RuntimeError("alpha's vector store is away")
        return real(namespace, **kwargs)

    monkeypatch.setattr(retention, "expire", expire)
    with pytest.raises(jobs.JobFailed, match="alpha's vector store is away"):
        jobs.run_job("expire_memories")
    assert JobState.objects.get(name="expire_memories").last_result["failed"] == [
        "alpha: alpha's vector store is away"]


@pytest.mark.django_db(transaction=True)
def test_the_audit_checkpoint_walks_only_new_entries_and_fails_on_tampering(agent):
    agent.post("/api/v1/memories", {"content": "first"})
    first = jobs.run_job("audit_checkpoint")
    agent.post("/api/v1/memories", {"content": "second"})
    second = jobs.run_job("audit_checkpoint")
    assert second["verified"] == 1 and second["seq"] == first["seq"] + 1
    assert AuditCheckpoint.objects.count() == 2
    agent.post("/api/v1/memories", {"content": "third"})
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditentry SET operation = 'x' WHERE seq = %s", [second["seq"] + 1])
    with pytest.raises(jobs.JobFailed):
        jobs.run_job("audit_checkpoint")
    state = JobState.objects.get(name="audit_checkpoint")
    assert (state.last_outcome, state.failures) == ("error", 1)
    assert "last error: JobFailed: audit_checkpoint reported a problem" in _command("status")
    assert AuditCheckpoint.objects.count() == 2  # no checkpoint over a broken link


def test_an_interrupted_retention_run_is_finished_by_the_next(agent, alpha):
    from apps.privacy import erasure

    stored = agent.post("/api/v1/memories", {"content": "Expired note."}).json()
    Memory.objects.filter(pk=stored["id"]).update(  # expired since (ingest refuses a past one)
        expires_at=timezone.now() - timedelta(days=1))
    # A run that stopped after approving (the worker was killed): the request is left.
    left = erasure.create(RETENTION, {"namespace": "alpha", "ids": [stored["id"]]})
    erasure.approve(RETENTION, left.pk)
    result = jobs.run_job("expire_memories")
    assert result == {"erased": 0, "resumed": 1,  # finished, not erased twice
                      "idempotency_records_dropped": 0}
    left.refresh_from_db()
    assert left.state == ErasureState.EXECUTED and left.certificate_sha256
    assert not Memory.objects.filter(pk=stored["id"]).exists()
    assert ErasureRequest.objects.count() == 1
    assert jobs.run_job("expire_memories") == {"erased": 0, "resumed": 0,
                                               "idempotency_records_dropped": 0}


def test_retention_drops_old_idempotency_records(agent, alpha, settings):
    import datetime as dt

    from django.utils import timezone

    from apps.memories.models import IdempotencyRecord

    for key in ("old", "new"):
        agent.post("/api/v1/memories", {"content": f"kept {key}"}, HTTP_IDEMPOTENCY_KEY=key)
    IdempotencyRecord.objects.filter(key="old").update(
        created_at=timezone.now() - dt.timedelta(days=8))
    assert jobs.run_job("expire_memories")["idempotency_records_dropped"] == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
    assert Memory.objects.count() == 2  # the memories stay; only the replay records go


@pytest.mark.django_db(transaction=True)
def test_drain_job_replays_the_outbox(agent, alpha):
    stored = agent.post("/api/v1/memories", {"content": "Left in the outbox."}).json()
    # left by a write that failed a minute ago (a row of a write still indexing it is not
    # the job's: tests/memories/test_indexing.py)
    IndexOutbox.objects.create(namespace=alpha, memory_id=stored["id"], op="upsert",
                               created_at=timezone.now() - timedelta(minutes=1))
    assert jobs.run_job("drain_outbox") == {"backlog_before": 1, "backlog_after": 0}


def test_the_server_runs_jobs_in_process(embedded_env, tmp_path):
    """Embedded mode: a task queued by another process (here ``manage.py shell``, as the
    scheduler would) is run by the consumer inside Daphne. The daily job is used so that
    its own schedule (03:17) cannot add a run while the test watches."""
    migrate(embedded_env)
    with DaphneServer(tmp_path / "daphne.log", embedded_env):
        manage(embedded_env, "shell", "-c",
               "from apps.ops.tasks import audit_verify_full; audit_verify_full()")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = _status_line(manage(embedded_env, "jobs", "status"), "audit_verify_full")
            if " ok " in line:
                break
            time.sleep(0.5)
        assert " ok " in line and line.split()[-2] == "1", line  # one run, by the server


def test_a_run_just_taken_over_is_not_taken_over_again_by_a_leftover_heartbeat(db, settings):
    """Mid-upgrade a worker that does not beat may take over a dead run's lease and leave
    its old heartbeat: the lease is fresh (running_since), so it stays held."""
    settings.MEMORYWEB_JOB_HEARTBEAT_SECONDS = 30
    now = timezone.now()
    JobState.objects.create(name="drain_outbox", running_since=now, running_on="old:1",
                            lease="fresh", heartbeat_at=now - timedelta(hours=1))
    assert jobs.run_job("drain_outbox") is None


@pytest.mark.processes  # a fresh Python per value: the settings are read at start-up
def test_settings_refuse_a_heartbeat_or_idempotency_window_of_zero():
    env = {**os.environ, "MEMORYWEB_ENV": "test", "DJANGO_SETTINGS_MODULE": "memoryweb.settings"}
    for name in ("MEMORYWEB_JOB_HEARTBEAT_SECONDS", "MEMORYWEB_IDEMPOTENCY_DAYS"):
        done = subprocess.run([sys.executable, "manage.py", "check", "--tag", "memoryweb"], cwd=ROOT,
                              env={**env, name: "0"}, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode != 0 and f"{name} must be above 0" in done.stderr
