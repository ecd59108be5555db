"""Rollups: a namespace's memories summarised by period, with grips back to the sources
(docs/timeline.md).

A :class:`RollupNode` is one period of one tree (the whole namespace, ``agent_id`` "", or
one agent's memories): a segment (a stretch of one session within a day), a day, an ISO
week, a month or a year, all in UTC. Its summary is also a memory of kind ``summary``
(``memory``), written through the write path, so recall finds it. A :class:`Grip` ties
one part of a node's summary to one source memory and the excerpt of it that supports
the part; a :class:`RollupSource` row records each memory a segment was built from — the
evidence erasure checks (apps/timeline/erasure.py) — and :class:`RollupState` is a tree's
build lease and last report.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from apps.core.scoping import NamespaceScopedQuerySet
from apps.memories.models import Memory
from apps.memories.sealing import SealedJSON, SealedText
from apps.tenancy.models import Namespace


class Level(models.TextChoices):
    SEGMENT = "segment"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


class NodeStatus(models.TextChoices):
    #: Built from its current inputs (its summary may be empty: nothing to summarise).
    OK = "ok"
    #: Emptied by an erasure that reached its inputs, waiting for its rebuild (the erasure
    #: rebuilds it at once when it can, else the next build does).
    PENDING = "pending"
    #: Its own summary memory was erased: it stays empty until its inputs change, so the
    #: erased text does not come back from the same inputs.
    ERASED = "erased"


class RollupNode(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    agent_id = models.CharField(max_length=128, blank=True, default="",
                                help_text='Whose memories: "" for the whole namespace.')
    level = models.CharField(max_length=8, choices=Level.choices)
    #: UTC. Day, week (ISO, Monday), month, year: [start, end). A segment: its first and
    #: last memory's time, both included.
    start = models.DateTimeField()
    end = models.DateTimeField()
    session_id = models.CharField(max_length=128, blank=True, default="",
                                  help_text="A segment's session; empty at the other levels.")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="children")
    #: The summary's text and parts are a copy of its summary memory's: sealed like it in
    #: an encrypted namespace (docs/encryption.md), bound to the node's id.
    summary = SealedText(blank=True, default="")
    #: The summary's parts in order (``summary`` is them joined by a line break); a grip
    #: names its part by index.
    parts = SealedJSON(default=list, blank=True)
    summarizer = models.CharField(max_length=128, blank=True, default="")
    #: The memories the period covers (a segment's sources; a day's, the sum of its
    #: segments'; above, the sum of the children's).
    source_count = models.PositiveIntegerField(default=0)
    #: What the node was built from: a segment's and a day's memories (id, version, time,
    #: session); above, the children's summaries. Equal on the next build: nothing to do.
    input_digest = models.CharField(max_length=64, blank=True, default="")
    built_at = models.DateTimeField(null=True, blank=True)
    #: Bumped at every change of the row's content: a build that read a node checks it
    #: before writing what it derived from it.
    revision = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=8, choices=NodeStatus.choices, default=NodeStatus.OK)
    #: The summary as a memory of kind ``summary`` (recallable); replaced, not edited, at
    #: each rebuild, so no version history keeps an older summary.
    memory = models.OneToOneField(Memory, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    #: ERASED: the content SHA-256 of the erased summary memory; a rebuild that would write
    #: that very text again keeps the node empty instead.
    erased_content_sha256 = models.CharField(max_length=64, blank=True, default="")

    objects = NamespaceScopedQuerySet.as_manager()

    class Meta:
        ordering = ["start", "level"]
        constraints = [
            models.UniqueConstraint(fields=["namespace", "agent_id", "level", "start", "session_id"],
                                    name="rollupnode_one_per_period"),
        ]
        indexes = [models.Index(fields=["namespace", "agent_id", "level", "start"],
                                name="rollupnode_tree_level_start")]

    def __str__(self) -> str:
        return f"{self.level} {self.start:%Y-%m-%d %H:%M}"


class GripQuerySet(NamespaceScopedQuerySet):
    namespace_fields = ("node__namespace_id",)


class Grip(models.Model):
    """One part of a node's summary, tied to a source memory and the excerpt of it that
    supports the part (a substring of the memory's content when the node was built)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    node = models.ForeignKey(RollupNode, on_delete=models.CASCADE, related_name="grips")
    part = models.PositiveIntegerField(help_text="Index into the node's parts.")
    position = models.PositiveIntegerField(help_text="Order among the node's grips.")
    memory = models.ForeignKey(Memory, on_delete=models.CASCADE, related_name="+")
    #: A substring of a memory: sealed in an encrypted namespace (the node's), bound to
    #: the grip's id.
    excerpt = SealedText(namespace="node.namespace_id")

    objects = GripQuerySet.as_manager()

    class Meta:
        ordering = ["node", "position"]
        indexes = [models.Index(fields=["memory"], name="grip_memory")]

    def __str__(self) -> str:
        return self.excerpt[:60]


class RollupSource(models.Model):
    """A memory a segment was built from. By id, without a foreign key: a deleted memory's
    row stays until the next build or erasure removes it, so erasure's check sees whether
    any node still derives from an erased memory."""

    node = models.ForeignKey(RollupNode, on_delete=models.CASCADE, related_name="sources")
    memory_id = models.UUIDField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["node", "memory_id"],
                                               name="rollupsource_unique")]

    def __str__(self) -> str:
        return str(self.memory_id)


class RollupState(models.Model):
    """A tree's build: the lease one build at a time holds, and the last run's report
    (the scheduled job reads it to know when a namespace is due)."""

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    agent_id = models.CharField(max_length=128, blank=True, default="")
    running_since = models.DateTimeField(null=True, blank=True)
    lease = models.CharField(max_length=32, blank=True, default="")
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_result = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["namespace", "agent_id"],
                                               name="rollupstate_one_per_tree")]

    def __str__(self) -> str:
        return f"{self.namespace_id}/{self.agent_id or '*'}"
