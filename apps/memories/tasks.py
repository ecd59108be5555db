"""huey tasks of the dashboard's bulk jobs (apps/memories/bulk_jobs.py); the consumer
finds this module as it finds apps/ops/tasks.py (``autodiscover_modules("tasks")``)."""

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from apps.memories import bulk_jobs


@db_task()
def run_bulk_job(job_id: str) -> None:
    """Run one bulk job; a second task for the same job finds it held and returns."""
    bulk_jobs.run(job_id)


@db_periodic_task(crontab(minute="*"))
def resume_bulk_jobs() -> None:
    """Queue again the bulk jobs whose worker died (a restart) or whose task was lost."""
    bulk_jobs.resume_stalled()
