"""Erasure requests and the certificates their execution produces."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from apps.core.scoping import NamespaceScopedQuerySet
from apps.memories.sealing import SealedJSON, SealedText

#: What a sealed selector reads as once its namespace is deleted (its key was destroyed
#: with it: docs/encryption.md, "Shredding"). The row and its certificate hash stay.
SELECTOR_GONE = {"sealed": "the namespace was deleted and its key destroyed"}


class ErasureState(models.TextChoices):
    REQUESTED = "requested"
    APPROVED = "approved"
    #: Deleted from SQL; a vector-index deletion or a check is still to succeed (retry).
    EXECUTING = "executing"
    EXECUTED = "executed"
    REJECTED = "rejected"


class ErasureRequest(models.Model):
    """A request to erase a subject's memories everywhere, and its record.

    requested -> approved -> executed (or -> rejected). The namespace is kept as a slug
    and id too, so the request and its certificate outlive the namespace.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    namespace = models.ForeignKey("tenancy.Namespace", null=True, on_delete=models.SET_NULL,
                                  related_name="erasure_requests")
    namespace_slug = models.CharField(max_length=64)
    #: ``selector``, ``reason``, ``rejection_reason`` and ``certificate`` name the person
    #: (a subject id, an agent, free text): sealed in an encrypted namespace
    #: (docs/encryption.md), bound to the request's id.
    selector = SealedJSON(help_text="Whose memories: the namespace and one subject field.",
                          when_gone=SELECTOR_GONE)
    reason = SealedText(max_length=500, blank=True, when_gone="")
    state = models.CharField(max_length=16, choices=ErasureState.choices,
                             default=ErasureState.REQUESTED)
    requested_by = models.CharField(max_length=200)
    requested_at = models.DateTimeField(default=timezone.now)
    decided_by = models.CharField(max_length=200, blank=True, help_text="Who approved or rejected.")
    decided_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = SealedText(max_length=500, blank=True, when_gone="")
    executed_by = models.CharField(max_length=200, blank=True)
    executed_at = models.DateTimeField(null=True, blank=True)
    #: What execution removed: [{"id", "content_sha256"}], kept so a retry finishes the job.
    erased = models.JSONField(default=list, blank=True)
    last_error = models.TextField(blank=True)
    #: A deleted encrypted namespace's reads as ``{}`` (shredded with its key); the hash
    #: below, the erasure ledger and the audit chain still verify the requester's copy.
    certificate = SealedJSON(null=True, blank=True, when_gone={})
    certificate_sha256 = models.CharField(max_length=64, blank=True)

    objects = NamespaceScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-requested_at"]
        indexes = [models.Index(fields=["namespace", "state"], name="erasure_ns_state_idx")]

    def __str__(self) -> str:
        return f"erasure {self.id} ({self.state}) in {self.namespace_slug}"
