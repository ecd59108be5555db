"""huey's schedule for the jobs in apps/ops/jobs.py (huey.contrib.djhuey finds this
module). Every task only calls ``run_job``, which applies pausing, the lease, metrics
and the job's state; the schedules are listed for people in ``manage.py jobs status``."""

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from apps.ops.jobs import run_job


@db_periodic_task(crontab(minute="*"))
def drain_outbox():
    run_job("drain_outbox")


@db_periodic_task(crontab(minute="7"))
def expire_memories():
    run_job("expire_memories")


@db_periodic_task(crontab(minute="*/10"))
def audit_checkpoint():
    run_job("audit_checkpoint")


@db_periodic_task(crontab(hour="3", minute="17"))
def audit_verify_full():
    run_job("audit_verify_full")
