"""What the lifecycle keeps of its own: when each namespace was last consolidated on
schedule, and the namespace merges (ids and counts only: the lineage itself lives on the
memories)."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from apps.core.scoping import NamespaceScopedQuerySet
from apps.tenancy.models import Namespace


class ConsolidationState(models.Model):
    """The scheduled consolidation of one namespace: its last run and what it did."""

    namespace = models.OneToOneField(Namespace, on_delete=models.CASCADE,
                                     related_name="consolidation_state")
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    #: Counts of the last run (candidates, merged, superseded, stale, conflicts_linked) or
    #: its error; never a memory's text or id.
    last_result = models.JSONField(default=dict, blank=True)

    objects = NamespaceScopedQuerySet.as_manager()

    def __str__(self) -> str:
        return f"consolidation of {self.namespace_id}"


class NamespaceMerge(models.Model):
    """One namespace's memories moved into another (apps/lifecycle/namespace_merge.py):
    the run's state and progress, resumable after the last committed batch."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        #: A revert too large for its request, run by huey's worker (resumable).
        REVERTING = "reverting", "Reverting"
        REVERTED = "reverted", "Reverted"

    ACTIVE = (State.QUEUED, State.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    #: Deleting either namespace deletes the record (the audit log keeps the history): a
    #: deleted source cannot take its memories back, a deleted target has none to give.
    source = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    target = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    requested_by = models.CharField(max_length=200)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    total = models.PositiveIntegerField(default=0, help_text="Memories to move, counted at the start.")
    moved = models.PositiveIntegerField(default=0)
    #: Moved memories whose content the target already held live: superseded by it.
    duplicates = models.PositiveIntegerField(default=0)
    #: The last moved memory's id (batches go in id order).
    cursor = models.CharField(max_length=36, blank=True, default="")
    #: What the start decided (keys and grants revoked, members left on the source, the
    #: target's members and grantees who now see the moved memories); ids and names only.
    report = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    lease = models.CharField(max_length=32, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    reverted_at = models.DateTimeField(null=True, blank=True)
    #: Who asked for the revert (its audit label): a revert run as a job acts as them.
    reverted_by = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"merge of {self.source_id} into {self.target_id} ({self.state})"


class NamespaceMergeItem(models.Model):
    """One moved memory: what its revert needs (ids only, never content)."""

    merge = models.ForeignKey(NamespaceMerge, on_delete=models.CASCADE, related_name="items")
    #: The memory's id (not a foreign key: the memory may be erased later, the record stays).
    memory_id = models.UUIDField()
    #: The target's memory it duplicated, if any (it superseded the moved one).
    duplicate_of = models.UUIDField(null=True, blank=True)
    #: Ids it had in other systems that the move left behind: seed 000's number (the
    #: target numbers its own), or an id the target already used. ``[[system, id], ...]``.
    dropped_ids = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["merge", "memory_id"],
                                               name="namespacemergeitem_unique")]

    def __str__(self) -> str:
        return f"{self.memory_id} in merge {self.merge_id}"


class WeakMemory(models.Model):
    """A memory whose strength is below ``MEMORYWEB_FORGET_FLOOR`` (apps/lifecycle/
    forgetting.py): watched from ``below_since``, proposed for forgetting after
    ``MEMORYWEB_FORGET_AFTER_DAYS``, then dismissed by a person or requested for erasure.
    Goes with its memory (cascade); ids, numbers and states only."""

    class State(models.TextChoices):
        WATCHING = "watching", "Watching"
        PROPOSED = "proposed", "Proposed for forgetting"
        DISMISSED = "dismissed", "Dismissed (keep it)"
        REQUESTED = "requested", "Erasure requested"

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    memory = models.OneToOneField("memories.Memory", on_delete=models.CASCADE, related_name="+")
    strength = models.FloatField()
    below_since = models.DateTimeField()
    checked_at = models.DateTimeField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.WATCHING)
    erasure_request = models.UUIDField(null=True, blank=True)
    decided_by = models.CharField(max_length=200, blank=True)

    objects = NamespaceScopedQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["namespace", "state"], name="weakmemory_ns_state")]

    def __str__(self) -> str:
        return f"{self.memory_id} ({self.state})"


class ConsolidationRun(models.Model):
    """A consolidation too large to answer within its request (more candidates than
    ``MEMORYWEB_CONSOLIDATE_INLINE_MAX``), run by huey's worker
    (apps/lifecycle/consolidation_jobs.py): its input, progress and result.

    The result keeps ids, similarities and counts, never a memory's text: the merged text
    is read from the survivor when the run is shown, so an erased memory leaves nothing
    here (its :class:`ConsolidationRunMember` rows go and the result forgets its id)."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    ACTIVE = (State.QUEUED, State.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    #: Who asked (the audit label) and as what: the run acts with that role and agent.
    requested_by = models.CharField(max_length=200)
    agent_id = models.CharField(max_length=200, blank=True, default="")
    role = models.PositiveSmallIntegerField(help_text="apps.core.roles.Role's value.")
    #: The key or person that asked: the run checks they still may (a key revoked since,
    #: a membership removed) before it reads and again before it merges.
    key_id = models.BigIntegerField(null=True, blank=True)
    user_id = models.BigIntegerField(null=True, blank=True)
    #: Times a worker took the run up (a run that keeps dying is given up: failed).
    attempts = models.PositiveSmallIntegerField(default=0)
    #: The request's validated body (dry_run, threshold, filters): no memory content.
    request = models.JSONField(default=dict, blank=True)
    dry_run = models.BooleanField(default=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    #: Progress: the stage running (vectors, neighbours, apply) and its done/total.
    stage = models.CharField(max_length=32, blank=True, default="")
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    candidates = models.PositiveIntegerField(default=0, help_text="Memories matched when "
                                             "the run was asked for.")
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    lease = models.CharField(max_length=32, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = NamespaceScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["namespace", "state"], name="consolidationrun_ns_state")]
        #: One run at a time per namespace, decided by the database under concurrency.
        constraints = [models.UniqueConstraint(
            fields=["namespace"], condition=models.Q(state__in=["queued", "running"]),
            name="consolidationrun_one_active")]

    def __str__(self) -> str:
        return f"consolidation run {self.pk} of {self.namespace_id} ({self.state})"


class ConsolidationRunMember(models.Model):
    """A memory a run's result names (a proposal's member or a conflict's side): what
    erasure finds and removes, so a result never outlives a memory's erasure."""

    run = models.ForeignKey(ConsolidationRun, on_delete=models.CASCADE, related_name="members")
    #: Not a foreign key: the memory may be erased; erasure removes this row with it.
    memory_id = models.UUIDField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "memory_id"],
                                               name="consolidationrunmember_unique")]

    def __str__(self) -> str:
        return f"{self.memory_id} in run {self.run_id}"
