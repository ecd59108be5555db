"""The audit log: an append-only, SHA-256 hash-chained record of every operation.

Each entry's ``entry_hash`` covers its canonical serialization, which includes the
previous entry's hash, so editing, deleting or reordering any entry breaks every link
after it (``manage.py audit_verify``). ``AuditHead`` holds the chain's tip: writers
lock it to append in order, and the tip is also written outside the database
(apps.audit.anchor) so that cutting off the tail is detectable too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from django.db import models
from django.utils import timezone

from apps.core.scoping import NamespaceScopedQuerySet

GENESIS_HASH = "0" * 64


class AuditEntry(models.Model):
    seq = models.BigIntegerField(primary_key=True, help_text="1, 2, 3, … without gaps.")
    created_at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(max_length=200, help_text="key:<prefix>, user:<name> or system:<job>.")
    agent_id = models.CharField(max_length=128, blank=True)
    #: The namespace's slug and id at the time: kept as values (no foreign key) so the
    #: entry outlives the namespace's deletion.
    namespace = models.CharField(max_length=64, blank=True)
    namespace_id = models.BigIntegerField(null=True, blank=True)
    operation = models.CharField(max_length=64)
    record_ids = models.JSONField(default=list, blank=True)
    summary = models.JSONField(default=dict, blank=True,
                               help_text="What happened, in counts and field names; never content.")
    request_id = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64)
    entry_hash = models.CharField(max_length=64)

    objects = NamespaceScopedQuerySet.as_manager()

    class Meta:
        ordering = ["seq"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["namespace_id", "seq"], name="audit_namespace_idx"),
            models.Index(fields=["operation", "seq"], name="audit_operation_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.operation} by {self.actor}"

    def canonical(self) -> bytes:
        """The bytes the hash covers: every field but the hash, as sorted compact JSON."""
        created = self.created_at.astimezone(dt.UTC).isoformat(timespec="microseconds")
        return json.dumps({
            "seq": self.seq, "created_at": created, "actor": self.actor,
            "agent_id": self.agent_id, "namespace": self.namespace,
            "namespace_id": self.namespace_id, "operation": self.operation,
            "record_ids": self.record_ids, "summary": self.summary,
            "request_id": self.request_id, "prev_hash": self.prev_hash,
        }, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    def compute_hash(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()


class AuditCheckpoint(models.Model):
    """A point up to which the chain was verified (by the ``audit_checkpoint`` job): the
    next run verifies only what was written after it. A full walk ignores checkpoints."""

    seq = models.BigIntegerField(unique=True)
    entry_hash = models.CharField(max_length=64)
    verified_at = models.DateTimeField(default=timezone.now)
    entries_checked = models.PositiveIntegerField(default=0)
    #: Who verified, for "last verified … by …" in the audit list: blank is the
    #: ``audit_checkpoint`` job; the dashboard's "Verify chain" button says so here.
    verified_by = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-seq"]

    def __str__(self) -> str:
        return f"verified up to {self.seq}"


class AuditRecord(models.Model):
    """Which entries name which record: an index for export and erasure ("every entry
    about this memory"), rebuilt from ``record_ids``; not part of the chain."""

    entry = models.ForeignKey(AuditEntry, on_delete=models.DO_NOTHING, db_constraint=False,
                              related_name="records")
    record_id = models.CharField(max_length=64, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["entry", "record_id"],
                                               name="auditrecord_unique")]

    def __str__(self) -> str:
        return f"#{self.entry_id} → {self.record_id}"


class AuditHead(models.Model):
    """The chain's tip (one row, id 1). Appending locks it, so entries get consecutive
    sequence numbers and each links to the one before, across processes."""

    seq = models.BigIntegerField(default=0)
    entry_hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"head #{self.seq}"
