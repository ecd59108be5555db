"""What the gateway learns from exchanges (docs/gateway.md, "Learning").

Two tables, both derived data of a namespace and registered as stores
(apps/gateway/learning_stores.py), so erasure, ``verify_certificate`` and ``stats`` reach
them:

- :class:`PendingExchange`: an answered exchange waiting for extraction — the latest user
  turn(s) and the assistant's answer, **redacted before they were written** (never the
  raw text), dropped once its facts are applied. The queue survives a restart: the
  learner works from these rows (claim, attempts, next attempt), not from memory.
- :class:`LearnedFact`: a candidate fact in **quarantine** (never recalled nor injected:
  it is no memory) until it is seen again or approved, then **promoted** into a memory
  through the memories' write path (``memory_id`` names it), or **rejected**.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from apps.memories.sealing import SealedJSON, SealedText
from apps.tenancy.models import ApiKey, Namespace


class PendingExchange(models.Model):
    """One exchange to learn from; text redacted. ``facts`` holds what extraction found
    (redacted too) once it succeeded, ``applied`` how many of them are done, so a worker
    that stops midway resumes without applying a fact twice."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    #: The key that sent it (its principal stores what is promoted); a deleted key's
    #: exchanges go with it.
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    agent_id = models.CharField(max_length=128)
    session_id = models.CharField(max_length=128, blank=True, default="")
    api = models.CharField(max_length=16)  # chat | responses | anthropic
    #: Sealed in an encrypted namespace (docs/encryption.md), bound to the row's id.
    user_text = SealedText(blank=True, default="")
    assistant_text = SealedText(blank=True, default="")
    facts = SealedJSON(null=True, blank=True)
    applied = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    #: A worker's claim: another leaves the row alone until this moment.
    claimed_until = models.DateTimeField(null=True, blank=True)
    #: Why the last attempt failed (the error's type and status, never the text).
    last_error = models.CharField(max_length=300, blank=True, default="")
    failed = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["failed", "next_attempt_at"], name="gw_pending_due")]

    def __str__(self) -> str:
        return f"exchange {self.pk} ({self.agent_id})"


class FactState(models.TextChoices):
    QUARANTINED = "quarantined", "Quarantined"
    #: Claimed by a promotion storing its memory (apps/gateway/learning.py ``_promote``).
    PROMOTING = "promoting", "Being promoted"
    PROMOTED = "promoted", "Promoted"
    REJECTED = "rejected", "Rejected"


class LearnedFact(models.Model):
    """A fact extracted from exchanges: quarantined, promoted (``memory_id``) or rejected.
    One row per namespace and normalised text (``key``): a later sighting counts here."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    #: The key that taught it first (its principal stores the memory on approval).
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    agent_id = models.CharField(max_length=128)
    session_id = models.CharField(max_length=128, blank=True, default="")
    #: Sealed in an encrypted namespace (docs/encryption.md), bound to the row's id.
    text = SealedText()
    #: SHA-256 of the normalised text (apps/gateway/facts.py): sightings match on it. In an
    #: encrypted namespace an HMAC under the namespace's ``fact-key`` key instead.
    key = models.CharField(max_length=64)
    confidence = models.FloatField(default=0.3)
    seen_count = models.PositiveIntegerField(default=1)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=16, choices=FactState.choices,
                             default=FactState.QUARANTINED)
    #: The memory it became (promoted).
    memory_id = models.UUIDField(null=True, blank=True)
    decided_by = models.CharField(max_length=200, blank=True, default="")
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["namespace", "key"],
                                               name="gw_fact_one_per_text")]
        indexes = [models.Index(fields=["namespace", "state", "last_seen_at"],
                                name="gw_fact_review")]

    def __str__(self) -> str:
        return f"{self.state} fact {self.pk}"


class GatewayTrace(models.Model):
    """One proxied request of a namespace that opted in to traces (``gateway.trace``):
    what the gateway did with memory (apps/gateway/traces.py). Ids, counts and timings;
    the recall query only at level ``content``, redacted. Kept
    ``MEMORYWEB_GATEWAY_TRACE_DAYS`` days; a registered store (``gateway_traces``)."""

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    #: The namespace's trace level when the request came: metadata | content.
    level = models.CharField(max_length=16)
    api = models.CharField(max_length=16)  # chat | responses | anthropic
    model = models.CharField(max_length=200, blank=True, default="")
    mode = models.CharField(max_length=16, blank=True, default="")
    agent_id = models.CharField(max_length=128, blank=True, default="")
    injected = models.PositiveIntegerField(default=0)
    #: The injected memories' ids, in the block's order.
    memory_ids = models.JSONField(default=list, blank=True)
    screened_out = models.PositiveIntegerField(default=0)
    #: Why the recall failed open (timeout | error), else empty.
    fail_open = models.CharField(max_length=16, blank=True, default="")
    #: The gateway's own time before forwarding (admission, recall, injection), in ms.
    added_ms = models.FloatField(default=0.0)
    #: The status the client got (the upstream's, or the gateway's 502 / 504).
    upstream_status = models.PositiveSmallIntegerField(null=True, blank=True)
    #: Names the row before its insert (the integer id does not exist yet): a sealed
    #: ``query``'s associated data is bound to it.
    uid = models.UUIDField(default=uuid.uuid4, editable=False)
    #: The recall query (redacted), at level content only; sealed in an encrypted namespace.
    query = SealedText(blank=True, default="", row="uid")

    class Meta:
        indexes = [models.Index(fields=["namespace", "created_at"], name="gw_trace_recent")]

    def __str__(self) -> str:
        return f"{self.api} request at {self.created_at:%Y-%m-%d %H:%M:%S}"


class NamespaceGatewaySettings(Namespace):
    """The namespace seen as its gateway settings: no table of its own (a proxy), only so
    the dashboard's navigation lists *Gateway settings* under the gateway
    (apps/gateway/admin_settings.py; the page edits the namespace's settings through
    ``apps.tenancy.namespaces.update``)."""

    class Meta:
        proxy = True
        verbose_name = "gateway settings"
        verbose_name_plural = "gateway settings"
