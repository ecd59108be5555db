"""memories' background work: the scheduled ``drain_outbox`` job, and the huey tasks of
the dashboard's bulk jobs (apps/memories/bulk_jobs.py). huey's consumer and every
process's OpsConfig.ready find this module (``autodiscover_modules("tasks")``)."""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from apps.memories import bulk_jobs, indexing
from apps.memories.models import IdempotencyRecord, IndexOutbox
from apps.ops.jobs import Job, register


def _drain_outbox() -> dict[str, Any]:
    before = IndexOutbox.objects.count()
    indexing.drain_outbox(limit=10_000, in_flight_too=False)
    return {"backlog_before": before, "backlog_after": IndexOutbox.objects.count()}


def drop_old_idempotency_records() -> int:
    """Retries come within minutes; a record older than MEMORYWEB_IDEMPOTENCY_DAYS only
    takes space (a retry after it answers as a new request). Run by privacy's
    ``expire_memories`` job; returns how many records went."""
    cutoff = timezone.now() - timedelta(days=settings.MEMORYWEB_IDEMPOTENCY_DAYS)
    dropped = 0
    while True:  # in chunks: the first run after an upgrade may find a large backlog
        chunk = list(IdempotencyRecord.objects.filter(created_at__lt=cutoff)
                     .values_list("pk", flat=True)[:5000])
        if not chunk:
            return dropped
        dropped += IdempotencyRecord.objects.filter(pk__in=chunk).delete()[0]


drain_outbox = register(Job(
    "drain_outbox", "Replay vector-index work left by a Chroma outage (each server "
    "process also drains every MEMORYWEB_DRAIN_SECONDS).", "every minute", _drain_outbox),
    crontab(minute="*"))


@db_task()
def run_bulk_job(job_id: str) -> None:
    """Run one bulk job; a second task for the same job finds it held and returns."""
    bulk_jobs.run(job_id)


@db_periodic_task(crontab(minute="*"))
def resume_bulk_jobs() -> None:
    """Queue again the bulk jobs whose worker died (a restart) or whose task was lost."""
    bulk_jobs.resume_stalled()
