"""A bulk job of the dashboard's memory list: one SQL row per re-tag, re-kind or
forget-agents run that is too large for one request (issue 17, item 7).

The row is the job's whole truth: who started it, what it does and to which memories,
how far it got and what it did. The worker (apps/memories/bulk_jobs.py) reads it and
writes its progress in the same transaction as each batch's changes, so a restarted
worker continues after the last committed batch and does nothing twice.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.core.roles import Action
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal


class BulkJobQuerySet(models.QuerySet):
    def for_principal(self, principal: Principal, action: Action = Action.EDIT) -> BulkJobQuerySet:
        """The jobs whose every namespace the principal may act in (system admins: all).

        A job that touched alpha and beta is alpha's and beta's business together: an admin
        of only one of them must not learn what was done in the other, so it is shown only
        to someone who may see both (anyone else gets 404)."""
        if principal.is_system_admin:
            return self
        allowed = principal.namespace_ids(action)
        if not allowed:
            return self.none()
        return self.exclude(namespaces__in=Namespace.objects.exclude(pk__in=allowed)).exclude(
            namespaces=None)


class BulkJob(models.Model):
    """A bulk action on many memories, run in batches by a background worker."""

    class Kind(models.TextChoices):
        RETAG = "retag", "Re-tag"
        CHANGE_KIND = "change_kind", "Change kind"
        FORGET_AGENTS = "forget_agents", "Forget agents"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (State.QUEUED, State.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    action = models.CharField(max_length=16, choices=Kind.choices)
    #: retag: {"add": [...], "remove": [...]}; change_kind: {"kind": ...}; forget: {}.
    params = models.JSONField(default=dict, blank=True)
    #: retag / change_kind: the selected memory ids (sorted, fixed when the job starts);
    #: forget_agents: [agent_id, namespace slug] pairs (every memory of each, at run time).
    targets = models.JSONField(default=list, blank=True)
    namespaces = models.ManyToManyField(Namespace, related_name="bulk_jobs", blank=True)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    #: "user:alice" and the role held when the job was started ("system" or "admin");
    #: the person's current role is checked again before every batch.
    started_by_label = models.CharField(max_length=200)
    started_role = models.CharField(max_length=16, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    #: Memories to go through (forget: counted when started; an agent writing meanwhile
    #: can make ``done`` pass it, the page then shows ``done`` as the total).
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0, help_text="Memories gone through so far.")
    #: The next index into ``targets`` (retag / change_kind: a memory, forget: a pair).
    cursor = models.PositiveIntegerField(default=0)
    batches = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    #: [[memory id, reason], ...]: the first REFUSALS_KEPT refusals (``refused`` counts all).
    refusals = models.JSONField(default=list, blank=True)
    #: forget_agents: {"<agent> in <slug>": memories forgotten}.
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    #: The running worker's token and its last sign of life (a dead worker's lease is
    #: taken over, see bulk_jobs.claim).
    lease = models.CharField(max_length=32, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.CharField(max_length=200, blank=True)

    objects = BulkJobQuerySet.as_manager()

    #: Refusals kept on the row (a job over 100,000 memories of a closed namespace would
    #: otherwise store 100,000 identical lines).
    REFUSALS_KEPT = 500

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "heartbeat_at"], name="memories_bulkjob_active")]
        verbose_name = "bulk job"

    def __str__(self) -> str:
        return f"{self.get_action_display()} of {self.total:,} memories ({self.state})"

    @property
    def finished(self) -> bool:
        return self.state not in self.ACTIVE

    @property
    def shown_total(self) -> int:
        return max(self.total, self.done)

    @property
    def percent(self) -> int:
        """Whole percent done (100 once finished, whatever the count)."""
        if self.state == self.State.DONE:
            return 100
        return min(100, self.done * 100 // self.shown_total) if self.shown_total else 0

    def describe(self) -> str:
        """What the job does, in words ("Re-tag 1,000 memories: add reviewed; remove inbox")."""
        if self.action == self.Kind.RETAG:
            parts = [f"add {', '.join(self.params.get('add') or [])}" if self.params.get("add") else "",
                     f"remove {', '.join(self.params.get('remove') or [])}"
                     if self.params.get("remove") else ""]
            how = "; ".join(p for p in parts if p) or "no change"
            return f"Re-tag {self.total:,} memories: {how}"
        if self.action == self.Kind.CHANGE_KIND:
            return f"Change the kind of {self.total:,} memories to {self.params.get('kind')}"
        agents = ", ".join(f"{agent} in {slug}" for agent, slug in self.targets)
        return f"Forget every memory of {agents} ({self.total:,} when started)"
