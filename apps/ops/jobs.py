"""Background jobs: what runs on a timer, and the one wrapper every run goes through.

The queue and scheduler are huey (tasks in apps/ops/tasks.py): embedded, its queue is a
SQLite file in the data directory and a consumer runs inside the server process; scaled,
the queue is Redis and ``manage.py run_huey`` runs as its own worker process. Whoever
runs a job, ``run_job`` gives it the same rules:

- a **paused** job is skipped (``manage.py jobs pause NAME``; the flag is in SQL, so it
  survives restarts and holds for every worker);
- one run at a time, through a **lease** on the job's row: a second worker finds it
  held and skips. The holder renews a heartbeat every MEMORYWEB_JOB_HEARTBEAT_SECONDS; a
  lease whose heartbeat is four beats old belonged to a run that died (a killed worker)
  and is taken over, and so is one older than the job's timeout (a run that hangs);
- each job is **idempotent and resumable**: it works from SQL state (the outbox rows,
  erasure requests left ``executing``, the last audit checkpoint), so a run cut off
  midway is finished by the next one without doing anything twice;
- runs, failures and durations go to the job's row and to Prometheus.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.ops import metrics
from apps.ops.models import JobState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    schedule: str  # for people: what the crontab in tasks.py says
    run: Callable[[], dict[str, Any]]
    #: A run holding the lease longer than this is presumed dead.
    timeout: timedelta = timedelta(minutes=30)


def _drain_outbox() -> dict[str, Any]:
    from apps.memories.indexing import drain_outbox
    from apps.memories.models import IndexOutbox

    before = IndexOutbox.objects.count()
    drain_outbox(limit=10_000)
    return {"backlog_before": before, "backlog_after": IndexOutbox.objects.count()}


def _expire_memories() -> dict[str, Any]:
    from apps.privacy import retention
    from apps.tenancy.models import Namespace

    failed: list[str] = []
    try:
        finished = retention.resume_interrupted()
    except Exception as exc:
        log.exception("retention: finishing interrupted erasures failed")
        finished, failed = 0, [f"resume: {exc}"]
    erased = 0
    for namespace in Namespace.objects.filter(archived_at__isnull=True).order_by("pk"):
        try:  # one namespace's trouble (say its vectors are unreachable) stops no other
            erased += retention.expire(namespace).erased
        except Exception as exc:
            log.exception("retention failed in namespace %s", namespace.slug)
            failed.append(f"{namespace.slug}: {exc}")
    try:
        dropped = _drop_old_idempotency_records()
    except Exception as exc:
        log.exception("retention: dropping old idempotency records failed")
        dropped, failed = 0, [*failed, f"idempotency records: {exc}"]
    result: dict[str, Any] = {"erased": erased, "resumed": finished,
                              "idempotency_records_dropped": dropped}
    if failed:
        result.update(ok=False, failed=failed[:20])
    return result


def _drop_old_idempotency_records() -> int:
    """Retries come within minutes; a record older than MEMORYWEB_IDEMPOTENCY_DAYS only
    takes space (a retry after it answers as a new request)."""
    from django.conf import settings
    from django.utils import timezone

    from apps.memories.models import IdempotencyRecord

    cutoff = timezone.now() - timedelta(days=settings.MEMORYWEB_IDEMPOTENCY_DAYS)
    dropped = 0
    while True:  # in chunks: the first run after an upgrade may find a large backlog
        chunk = list(IdempotencyRecord.objects.filter(created_at__lt=cutoff)
                     .values_list("pk", flat=True)[:5000])
        if not chunk:
            return dropped
        dropped += IdempotencyRecord.objects.filter(pk__in=chunk).delete()[0]


def _audit_checkpoint() -> dict[str, Any]:
    from apps.audit import checkpoint

    made = checkpoint.advance()
    return {"ok": made.ok, "verified": made.checked, "seq": made.last_seq}


def _audit_verify_full() -> dict[str, Any]:
    from apps.audit import checkpoint

    verdict = checkpoint.verify_all()
    return {"ok": verdict.ok, "verified": verdict.checked}


JOBS: dict[str, Job] = {job.name: job for job in [
    Job("drain_outbox", "Replay vector-index work left by a Chroma outage (each server "
        "process also drains every MEMORYWEB_DRAIN_SECONDS).", "every minute", _drain_outbox),
    Job("expire_memories", "Erase memories past their namespace's retention or their own "
        "expiry, with certificates; finishes erasures a stopped run left executing.",
        "hourly at :07", _expire_memories, timeout=timedelta(hours=2)),
    Job("audit_checkpoint", "Verify the audit entries written since the last checkpoint "
        "and record a new one (a broken chain fails the job and the metric).",
        "every 10 minutes", _audit_checkpoint),
    Job("audit_verify_full", "Verify the whole audit chain against the signed anchor.",
        "daily at 03:17", _audit_verify_full, timeout=timedelta(hours=6)),
]}


class JobFailed(Exception):
    """A job ran and reported a problem (for example a broken audit chain)."""


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


#: Heartbeats a lease may miss before it is presumed dead.
STALE_BEATS = 4


def _take_lease(job: Job) -> str | None:
    """Mark the job running and return the run's token, unless a live run holds it or it
    is paused (None)."""
    now, token = timezone.now(), uuid.uuid4().hex
    stale = timedelta(seconds=settings.MEMORYWEB_JOB_HEARTBEAT_SECONDS * STALE_BEATS)
    JobState.objects.get_or_create(name=job.name)
    with transaction.atomic():
        taken = JobState.objects.filter(name=job.name, paused=False).filter(
            Q(running_since__isnull=True) | Q(running_since__lt=now - job.timeout)
            # Stale heartbeat, on a run old enough to have beaten (a run just taken over by
            # a worker that does not beat, mid-upgrade, keeps the old value meanwhile).
            | Q(heartbeat_at__lt=now - stale, running_since__lt=now - stale)
        ).update(running_since=now, running_on=_holder(), last_started_at=now, lease=token,
                 heartbeat_at=now)
    return token if taken else None


class _Heartbeat(threading.Thread):
    """Renews the run's lease while it works; stops with the run (or when it lost it)."""

    def __init__(self, name: str, token: str):
        super().__init__(name=f"job-heartbeat-{name}", daemon=True)
        self.job, self.token, self.stopped = name, token, threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(settings.MEMORYWEB_JOB_HEARTBEAT_SECONDS):
                try:
                    held = JobState.objects.filter(name=self.job, lease=self.token).update(
                        heartbeat_at=timezone.now())
                except Exception:  # a busy or dropped database: the next beat tries again
                    log.warning("job %s: heartbeat not written", self.job, exc_info=True)
                    connection.close_if_unusable_or_obsolete()
                    continue
                if not held:  # taken over (presumed dead): the run goes on, unguarded
                    log.error("job %s lost its lease to another worker while running",
                              self.job)
                    return
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def run_job(name: str) -> dict[str, Any] | None:
    """Run a job now under the rules above; None when skipped (paused or running)."""
    job = JOBS[name]
    token = _take_lease(job)
    if token is None:
        metrics.JOB_RUNS.labels(name, "skipped").inc()
        state = JobState.objects.get(name=name)
        log.info("job %s skipped: %s", name, "paused" if state.paused else
                 f"running on {state.running_on} since {state.running_since}")
        return None
    started = time.perf_counter()
    outcome, error, result = "ok", "", {}
    heartbeat = _Heartbeat(name, token)
    heartbeat.start()
    try:
        result = job.run()
        if result.get("ok") is False:
            raise JobFailed(f"{name} reported a problem: {result}")
    except Exception as exc:
        outcome, error = "error", f"{type(exc).__name__}: {exc}"
        log.exception("job %s failed", name)
        raise
    finally:
        heartbeat.stop()
        metrics.JOB_RUNS.labels(name, outcome).inc()
        metrics.JOB_SECONDS.labels(name).observe(time.perf_counter() - started)
        finished = {"last_finished_at": timezone.now(), "last_outcome": outcome,
                    "last_error": error[:4000], "last_result": result, "runs": F("runs") + 1,
                    "failures": F("failures") + int(outcome == "error")}
        held = JobState.objects.filter(name=name, lease=token).update(
            running_since=None, running_on="", lease="", heartbeat_at=None, **finished)
        if not held:  # taken over meanwhile: record the run, leave the new holder's lease
            JobState.objects.filter(name=name).update(**finished)
    return result


def set_paused(name: str, paused: bool, by: str) -> JobState:
    """Pause or resume a job for every worker (``manage.py jobs pause|resume``)."""
    if name not in JOBS:
        raise KeyError(name)
    state, _ = JobState.objects.get_or_create(name=name)
    state.paused, state.paused_by = paused, by if paused else ""
    state.paused_at = timezone.now() if paused else None
    state.save(update_fields=["paused", "paused_by", "paused_at"])
    return state


def states() -> list[tuple[Job, JobState]]:
    """Every job with its state (a row is created on first sight)."""
    found = {state.name: state for state in JobState.objects.all()}
    return [(job, found.get(job.name) or JobState(name=job.name)) for job in JOBS.values()]
