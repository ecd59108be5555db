"""Bulk work of the dashboard as background jobs (issue 17, item 7).

Re-tagging 223 memories in one request took 17.7 s with nothing on screen. Up to
MEMORYWEB_DASHBOARD_BULK_INLINE_MAX memories the memory list still acts within the
request; above it the action becomes a :class:`~apps.memories.bulk_models.BulkJob` row
that a huey worker (apps/memories/tasks.py) runs batch by batch while the person watches
its progress page.

The rules a job runs under:

- **The existing services do the work**, one call per batch (``retag_many``,
  ``set_kind_many``; forgetting: ``delete_by_agent``'s checks and deletion helper, see
  ``forget_some``), so versions, audit entries, the index and live events come out as
  from the inline action. A tags-only change embeds nothing.
- **Who started it is asked again before every batch**: the person is looked up afresh
  and must still be active and still hold the role the action needs in every namespace
  of the job (forgetting agents: system admin). Otherwise the job stops as failed,
  saying why; what the earlier batches did stays done (and audited).
- **Each batch commits together with the job's progress** (one transaction), so a worker
  killed mid-batch leaves neither a half batch nor a count that disagrees with the data.
  A restarted worker (or the minute's ``resume_bulk_jobs`` sweep) takes over a job whose
  heartbeat stopped and continues after the last committed batch: nothing is done twice.
- **One worker at a time** holds a job, through a lease token on its row; a worker that
  lost its lease (presumed dead, taken over) stops at its next batch.
- A job that raises is retried (the sweep picks it up again) up to MAX_ATTEMPTS times,
  then marked failed with the error.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.core.errors import ServiceError
from apps.core.roles import Action
from apps.memories import services
from apps.memories.bulk_models import BulkJob
from apps.memories.models import Memory
from apps.ops.jobs import stale_before
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal

log = logging.getLogger(__name__)

#: Runs that end in an error before the job is marked failed.
MAX_ATTEMPTS = 3
#: A queued job nobody picked up after this long is enqueued again by the sweep (the
#: queue may have lost it, say a Redis flush); before that its own task is on its way.
QUEUED_GRACE = timedelta(minutes=1)

State = BulkJob.State
Kind = BulkJob.Kind


class Refused(Exception):
    """The person who started the job may no longer do what it does."""


# --- Starting ------------------------------------------------------------------------
def start(user, action: str, params: dict[str, Any], targets: Sequence[Any],
          namespace_ids: Sequence[int], total: int) -> BulkJob:
    """Record a job and queue it once the row is committed (a worker that looked before
    the commit would not find it)."""
    principal = Principal.for_user(user)
    with transaction.atomic():
        job = BulkJob.objects.create(
            action=action, params=params, targets=list(targets), total=total,
            started_by=user, started_by_label=principal.label,
            started_role="system" if principal.is_system_admin else "admin")
        job.namespaces.set(list(namespace_ids))
        transaction.on_commit(lambda: enqueue(job.pk))
    log.info("bulk job %s queued: %s by %s", job.pk, job.describe(), principal.label)
    return job


def enqueue(job_id: uuid.UUID | str) -> None:
    """Hand the job to huey (the in-process consumer embedded, ``run_huey`` scaled)."""
    from apps.memories.tasks import run_bulk_job

    run_bulk_job(str(job_id))


# --- Running -------------------------------------------------------------------------

def claim(job_id: uuid.UUID | str) -> str | None:
    """Take the job's lease (a token) unless a live worker holds it or it is finished."""
    now, token = timezone.now(), uuid.uuid4().hex
    taken = BulkJob.objects.filter(pk=job_id, state__in=BulkJob.ACTIVE).filter(
        Q(lease="") | Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=stale_before())
    ).update(state=State.RUNNING, lease=token, heartbeat_at=now)
    if not taken:
        return None
    BulkJob.objects.filter(pk=job_id, started_at__isnull=True).update(started_at=now)
    return token


def run(job_id: uuid.UUID | str) -> str | None:
    """Run a job to its end (or until cancelled, refused or taken over); its final state,
    or None when another worker holds it or it had already finished."""
    token = claim(job_id)
    if token is None:
        return None
    targets = BulkJob.objects.values_list("targets", flat=True).get(pk=job_id)
    batch = settings.MEMORYWEB_DASHBOARD_BULK_BATCH
    try:
        while _step(job_id, token, targets, batch):
            pass
    except Exception as exc:
        log.exception("bulk job %s: a batch failed", job_id)
        _record_error(job_id, token, exc)
    return BulkJob.objects.values_list("state", flat=True).get(pk=job_id)


#: The row's fields a batch writes (never ``targets``, which can be large and is fixed).
_PROGRESS = ["state", "done", "cursor", "batches", "changed", "refused", "refusals", "result",
             "error", "lease", "heartbeat_at", "finished_at"]


def _step(job_id, token: str, targets: list, batch: int) -> bool:
    """One batch and the job's progress, in one transaction; whether more remains."""
    with transaction.atomic():
        job = BulkJob.objects.select_for_update().defer("targets").get(pk=job_id)
        if job.lease != token or job.state != State.RUNNING:
            return False  # cancelled, or taken over by another worker
        try:
            principal = principal_of(job)
        except Refused as exc:
            _finish(job, State.FAILED, f"Stopped: {exc}")
            job.save(update_fields=_PROGRESS)
            return False
        more = (_forget_batch(job, principal, targets, batch) if job.action == Kind.FORGET_AGENTS
                else _edit_batch(job, principal, targets, batch))
        job.batches += 1
        job.heartbeat_at = timezone.now()
        if not more:
            _finish(job, State.DONE)
        job.save(update_fields=_PROGRESS)
    return more


def _finish(job: BulkJob, state: str, error: str = "") -> None:
    job.state, job.lease, job.finished_at = state, "", timezone.now()
    if error:
        job.error = error
    log.info("bulk job %s %s: %d of %d gone through, %d changed, %d refused", job.pk, state,
             job.done, job.total, job.changed, job.refused)


def _edit_batch(job: BulkJob, principal: Principal, targets: list, batch: int) -> bool:
    """The next ``batch`` selected memories through the batched edit service."""
    ids = targets[job.cursor:job.cursor + batch]
    if ids:
        if job.action == Kind.RETAG:
            result = services.retag_many(principal, ids, add=job.params.get("add", []),
                                         remove=job.params.get("remove", []))
        else:
            result = services.set_kind_many(principal, ids, job.params["kind"])
        job.changed += len(result.updated)
        _refuse(job, [[memory_id, reason] for memory_id, reason in result.errors])
        job.cursor += len(ids)
        job.done += len(ids)
    return job.cursor < len(targets)


def _forget_batch(job: BulkJob, principal: Principal, targets: list, batch: int) -> bool:
    """Up to ``batch`` memories of the current (agent, namespace) pair; the pair is done
    when fewer than that were left."""
    if job.cursor >= len(targets):
        return False
    agent, slug = targets[job.cursor]
    label = f"{agent} in {slug}"
    try:
        forgotten = forget_some(principal, agent, slug, batch)
    except ServiceError as exc:  # the namespace was deleted meanwhile, say
        left = Memory.objects.filter(agent_id=agent, namespace__slug=slug).count()
        _refuse(job, [[label, exc.message]], count=left)
        job.done += left
        forgotten = 0
    else:
        job.result[label] = job.result.get(label, 0) + forgotten
        job.changed += forgotten
        job.done += forgotten
    if forgotten < batch:
        job.cursor += 1
    return job.cursor < len(targets)


def forget_some(principal: Principal, agent: str, slug: str, limit: int) -> int:
    """``services.delete_by_agent`` for at most ``limit`` memories (its checks, its audit
    operation ``memory.delete_by_agent``, one entry per batch): the service alone would
    delete an agent's memories in one transaction, whatever their number; a job needs
    them a batch at a time."""
    return sum(services.delete_by_agent(principal, agent, namespace=slug, limit=limit).values())


def _refuse(job: BulkJob, refusals: list[list[str]], count: int | None = None) -> None:
    job.refused += len(refusals) if count is None else count
    room = BulkJob.REFUSALS_KEPT - len(job.refusals)
    if room > 0:
        job.refusals = [*job.refusals, *refusals[:room]]


def principal_of(job: BulkJob) -> Principal:
    """The person who started the job as they are now; Refused if they may no longer
    do what the job does in every one of its namespaces."""
    user = (get_user_model().objects.filter(pk=job.started_by_id, is_active=True).first()
            if job.started_by_id else None)
    if user is None:
        raise Refused(f"{job.started_by_label} no longer has an active account.")
    principal = Principal.for_user(user)
    if job.action == Kind.FORGET_AGENTS:
        if not principal.is_system_admin:
            raise Refused(f"{principal.label} is no longer a system admin (forgetting agents "
                          "is for system admins).")
        return principal
    lost = sorted(Namespace.objects.filter(
        pk__in=[pk for pk in job.namespaces.values_list("pk", flat=True)
                if not principal.can(Action.EDIT, pk)]).values_list("slug", flat=True))
    if lost:
        raise Refused(f"{principal.label} may no longer edit memories in {', '.join(lost)}.")
    return principal


def _record_error(job_id, token: str, exc: Exception) -> None:
    """Give the lease back for a retry by the sweep, or fail the job after MAX_ATTEMPTS."""
    message = f"{type(exc).__name__}: {exc}"[:2000]
    with transaction.atomic():
        job = BulkJob.objects.select_for_update().defer("targets").filter(
            pk=job_id, lease=token).first()
        if job is None:
            return
        job.attempts += 1
        if job.attempts >= MAX_ATTEMPTS:
            _finish(job, State.FAILED, f"Failed after {job.attempts} attempts: {message}")
        else:
            job.error, job.lease = f"Attempt {job.attempts} failed (retried): {message}", ""
        job.save(update_fields=[*_PROGRESS, "attempts"])


def resume_stalled() -> list[str]:
    """Queue again every unfinished job nobody is working on: its worker died (stale
    heartbeat), an error gave its lease back, or its queued task was lost. The minute's
    ``resume_bulk_jobs`` task calls this; ``claim`` keeps a job to one worker anyway."""
    now = timezone.now()
    stalled = BulkJob.objects.filter(
        Q(state=State.RUNNING, lease="") | Q(state=State.RUNNING, heartbeat_at__lt=stale_before())
        | Q(state=State.QUEUED, created_at__lt=now - QUEUED_GRACE))
    ids = [str(pk) for pk in stalled.values_list("pk", flat=True)]
    for job_id in ids:
        log.warning("bulk job %s: resumed (its worker stopped or its task was lost)", job_id)
        enqueue(job_id)
    return ids


def cancel(job: BulkJob, by: str) -> bool:
    """Stop an unfinished job after its current batch (which commits or not as a whole)."""
    with transaction.atomic():
        cancelled = BulkJob.objects.filter(pk=job.pk, state__in=BulkJob.ACTIVE).update(
            state=State.CANCELLED, lease="", cancelled_by=by, finished_at=timezone.now())
    return bool(cancelled)


def status(job: BulkJob) -> dict[str, Any]:
    """What the progress page shows, as the status endpoint answers it."""
    return {"id": str(job.pk), "state": job.state, "state_label": job.get_state_display(),
            "finished": job.finished, "done": job.done, "total": job.shown_total,
            "percent": job.percent, "changed": job.changed, "refused": job.refused,
            "batches": job.batches, "count_text": f"{job.done:,} of {job.shown_total:,}"}
