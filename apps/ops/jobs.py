"""Background jobs: what runs on a timer, and the one wrapper every run goes through.

Each job belongs to the app whose data it works on and is declared there, in the app's
``tasks`` module, through ``register`` below (apps/memories/tasks.py: drain_outbox;
apps/privacy/tasks.py: expire_memories; apps/audit/tasks.py: the audit checks). The
queue and scheduler are huey: embedded, its queue is a SQLite file in the data directory
and a consumer runs inside the server process; scaled, the queue is Redis and
``manage.py run_huey`` runs as its own worker process. Whoever runs a job, ``run_job``
gives it the same rules:

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
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules
from huey.api import TaskWrapper
from huey.contrib.djhuey import db_periodic_task

from apps.ops import metrics
from apps.ops.models import JobState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    schedule: str  # for people: what the crontab given to ``register`` says
    run: Callable[[], dict[str, Any]]
    #: A run holding the lease longer than this is presumed dead.
    timeout: timedelta = timedelta(minutes=30)


#: Every scheduled job by name, filled by the apps that own them (``register``).
JOBS: dict[str, Job] = {}
#: The huey periodic task of each job: calling one queues a run (``audit_verify_full()``).
TASKS: dict[str, TaskWrapper] = {}

#: huey names a task "<module of its function>.<name>", and a queued message, a
#: revocation or a result carries that string. The jobs' tasks were all defined in
#: apps/ops/tasks.py, so each keeps "apps.ops.tasks.<job name>" (that module resolves the
#: names too): messages queued before the jobs moved to their apps still find their task.
TASK_MODULE = "apps.ops.tasks"


def register(job: Job, when: Callable[[datetime], bool]) -> TaskWrapper:
    """Declare a scheduled job: the app that owns the work calls this in its ``tasks``
    module (found by ``autodiscover``), with huey's schedule (a ``crontab``).

    The job joins JOBS (``manage.py jobs``, the metrics, the dashboard) and gets a huey
    periodic task named as above that only calls ``run_job``, which applies pausing, the
    lease, metrics and the job's state. Returns the task (calling it queues a run).
    """
    if job.name in JOBS:
        raise ValueError(f"a job named {job.name!r} is registered already")

    def run_on_schedule() -> None:
        run_job(job.name)

    run_on_schedule.__module__ = TASK_MODULE
    run_on_schedule.__name__ = run_on_schedule.__qualname__ = job.name
    run_on_schedule.__doc__ = job.description
    task = db_periodic_task(when, name=job.name)(run_on_schedule)
    JOBS[job.name], TASKS[job.name] = job, task
    return task


def autodiscover() -> None:
    """Import every installed app's ``tasks`` module, where its jobs are registered, as
    huey's ``run_huey`` does (OpsConfig.ready, so every process, a web server, a command
    or a worker, knows every job). Imported by name: apps.ops imports no app above it."""
    autodiscover_modules("tasks")


class JobFailed(Exception):
    """A job ran and reported a problem (for example a broken audit chain)."""


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


#: Heartbeats a lease may miss before it is presumed dead.
STALE_BEATS = 4


def stale_before() -> datetime:
    """A lease whose last heartbeat is older than this belonged to a run that died (every
    job-like run: scheduled jobs, bulk jobs, namespace merges, consolidation runs)."""
    return timezone.now() - timedelta(
        seconds=settings.MEMORYWEB_JOB_HEARTBEAT_SECONDS * STALE_BEATS)


def _take_lease(job: Job) -> str | None:
    """Mark the job running and return the run's token, unless a live run holds it or it
    is paused (None)."""
    now, token, cutoff = timezone.now(), uuid.uuid4().hex, stale_before()
    JobState.objects.get_or_create(name=job.name)
    with transaction.atomic():
        taken = JobState.objects.filter(name=job.name, paused=False).filter(
            Q(running_since__isnull=True) | Q(running_since__lt=now - job.timeout)
            # Stale heartbeat, on a run old enough to have beaten (a run just taken over by
            # a worker that does not beat, mid-upgrade, keeps the old value meanwhile).
            | Q(heartbeat_at__lt=cutoff, running_since__lt=cutoff)
        ).update(running_since=now, running_on=_holder(), last_started_at=now, lease=token,
                 heartbeat_at=now)
    return token if taken else None


class Heartbeat(threading.Thread):
    """Renews a lease while its run works; stops with the run (or when it lost the lease).

    ``renew()`` writes the beat and returns how many rows it updated: 0 means another
    worker took the lease over (presumed dead), and the run goes on unguarded. Used by the
    scheduled jobs here and by the lifecycle's long runs (consolidation jobs)."""

    def __init__(self, label: str, renew: Callable[[], int]):
        super().__init__(name=f"heartbeat-{label}", daemon=True)
        self.label, self.renew, self.stopped = label, renew, threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(settings.MEMORYWEB_JOB_HEARTBEAT_SECONDS):
                try:
                    held = self.renew()
                except Exception:  # a busy or dropped database: the next beat tries again
                    log.warning("%s: heartbeat not written", self.label, exc_info=True)
                    connection.close_if_unusable_or_obsolete()
                    continue
                if not held:  # taken over (presumed dead): the run goes on, unguarded
                    log.error("%s lost its lease to another worker while running", self.label)
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
    heartbeat = Heartbeat(f"job {name}", lambda: JobState.objects.filter(
        name=name, lease=token).update(heartbeat_at=timezone.now()))
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
    """Every job with its state, by name (apps register theirs in INSTALLED_APPS order)."""
    found = {state.name: state for state in JobState.objects.all()}
    return [(JOBS[name], found.get(name) or JobState(name=name)) for name in sorted(JOBS)]
