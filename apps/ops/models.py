"""Background job state: kept in SQL so pausing a job and its history survive restarts
and are shared by every worker process."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class JobState(models.Model):
    """One row per job name (apps/ops/jobs.py): paused or not, and its last run."""

    name = models.CharField(max_length=64, unique=True)
    paused = models.BooleanField(default=False)
    paused_by = models.CharField(max_length=200, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    #: Set while a run holds the job (a lease: a run older than the job's timeout is
    #: presumed dead, e.g. a killed worker, and the next run takes over).
    running_since = models.DateTimeField(null=True, blank=True)
    running_on = models.CharField(max_length=200, blank=True, help_text="host:pid of the run")
    #: The holding run's token: a run that lost its lease (timed out, taken over) cannot
    #: clear the lease of the run that took over when it finally finishes.
    lease = models.CharField(max_length=32, blank=True)
    #: Renewed by the holding run every MEMORYWEB_JOB_HEARTBEAT_SECONDS: a lease whose
    #: heartbeat stopped (the worker was killed) is taken over within minutes, not after
    #: the job's whole timeout.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.CharField(max_length=16, blank=True, help_text="ok, error or skipped")
    last_error = models.TextField(blank=True)
    last_result = models.JSONField(default=dict, blank=True, help_text="What the last run did.")
    runs = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({'paused' if self.paused else 'active'})"
