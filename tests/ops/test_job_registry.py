"""Scheduled jobs are declared by the apps that own them (apps/*/tasks.py) through
apps.ops.jobs.register, and keep the huey task names and schedules they had when
apps/ops/tasks.py listed them all (a message queued before an upgrade still runs)."""

from __future__ import annotations

from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from huey import crontab
from huey.contrib.djhuey import HUEY

from apps.ops import jobs

OWNERS = {"drain_outbox": "apps.memories.tasks", "expire_memories": "apps.privacy.tasks",
          "audit_checkpoint": "apps.audit.tasks", "audit_verify_full": "apps.audit.tasks",
          "build_rollups": "apps.timeline.tasks", "consolidate_memories": "apps.lifecycle.tasks",
          "review_strength": "apps.lifecycle.tasks"}


def test_every_job_is_declared_by_the_app_that_owns_it():
    assert {name: job.run.__module__ for name, job in jobs.JOBS.items()} == OWNERS


def test_huey_knows_each_job_under_its_name_from_before_the_move():
    periodic = {HUEY._registry.task_to_string(task) for task in HUEY._registry._periodic_tasks}
    assert {f"apps.ops.tasks.{name}" for name in OWNERS} <= periodic
    from apps.ops.tasks import audit_verify_full  # scripts' spelling still resolves

    assert audit_verify_full is jobs.TASKS["audit_verify_full"]
    with pytest.raises(ImportError):
        from apps.ops.tasks import no_such_job  # noqa: F401


@pytest.mark.parametrize(("name", "runs_at", "skips"), [
    ("drain_outbox", ["00:00", "13:41"], []),
    ("expire_memories", ["00:07", "13:07"], ["13:08", "13:00"]),
    ("audit_checkpoint", ["00:00", "13:50"], ["13:51", "13:07"]),
    ("audit_verify_full", ["03:17"], ["03:18", "04:17", "13:17"]),
    ("consolidate_memories", ["00:23", "13:23"], ["13:24", "13:00"]),
    ("review_strength", ["04:41"], ["04:42", "05:41", "13:41"]),
])
def test_the_schedules_are_unchanged(name, runs_at, skips):
    task = jobs.TASKS[name].s()

    def due(at: str) -> bool:
        hour, minute = at.split(":")
        return task.validate_datetime(datetime(2030, 1, 2, int(hour), int(minute)))

    assert [due(at) for at in runs_at] == [True] * len(runs_at)
    assert [due(at) for at in skips] == [False] * len(skips)


def test_a_job_name_is_registered_once(monkeypatch):
    monkeypatch.setitem(jobs.JOBS, "drain_outbox", jobs.JOBS["drain_outbox"])
    with pytest.raises(ValueError, match="registered already"):
        jobs.register(jobs.Job("drain_outbox", "again", "never", dict), crontab(minute="*"))


def test_the_jobs_command_lists_every_registered_job(db):
    out = StringIO()
    call_command("jobs", "status", stdout=out)
    listed = [line.split()[0] for line in out.getvalue().splitlines()[1:]
              if line and not line.startswith(" ")]
    assert listed == sorted(OWNERS)
    assert jobs.JOBS["expire_memories"].timeout == timedelta(hours=2)
    assert jobs.JOBS["audit_verify_full"].timeout == timedelta(hours=6)
