"""Memories (the truth), their edit history, tag rows and the vector-index outbox."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from apps.core.errors import Conflict
from apps.core.kinds import MemoryKind
from apps.core.scoping import NamespaceScopedQuerySet
from apps.memories import sealing
from apps.tenancy.models import Namespace


def content_hash(content: str, namespace: Namespace | int | None = None) -> str:
    """SHA-256 of the whitespace-normalised content (indexed per namespace for dedup, issue 3).

    In an encrypted namespace (docs/encryption.md) an HMAC-SHA256 under the namespace's
    ``content-hash`` key instead: a plain hash of a short memory ("yes", a name) would
    give its text away to a dictionary, and the key dies with the namespace's data key.
    Pass the namespace wherever the hash is stored or compared.
    """
    return sealing.keyed_hash(" ".join(content.split()), namespace, "content-hash")


class MemoryQuerySet(sealing.SealedQuerySet, NamespaceScopedQuerySet):
    """``for_principal`` (the scoping entry point; rows read by primary key apply its rule
    through ``scoping.namespace_check``) comes from NamespaceScopedQuerySet; bulk writes
    of sealed fields are sealed by sealing.SealedQuerySet."""

    namespace_path = "namespace"

    def live(self) -> MemoryQuerySet:
        """Not expired (expired rows wait for the retention job but are never served)."""
        return self.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))

    def current(self) -> MemoryQuerySet:
        """Not superseded by a consolidation (default lists and recall show only these)."""
        return self.filter(superseded_by__isnull=True)

    def in_namespace_checked(self, namespace: Namespace | int) -> MemoryQuerySet:
        """The memories of ``namespace`` (an instance or its pk), the namespace checked on
        the rows the other conditions find, never the index walked: for a query narrowed
        by something selective (ids, ``context_memory_id``, ``superseded_by``). SQLite
        here has no statistics (no ANALYZE): given ``namespace_id = ?`` its planner
        searches a (namespace, ...) index by the namespace alone, reading every memory of
        it, instead of the primary key or the foreign key's index. ``namespace_id + 0``
        is no column an index can serve; the rows are those of ``filter(namespace=...)``.
        """
        return self.alias(_ns=F("namespace_id") + 0).filter(_ns=getattr(namespace, "pk", namespace))

    def bulk_update(self, objs, fields, batch_size=None) -> int:
        """A memory's metadata tokens follow its metadata; a move to or from an encrypted
        namespace must re-seal (the sealing itself: sealing.SealedQuerySet)."""
        objs = list(objs)
        fields = list(fields)
        if "namespace" in fields:
            self._check_resealed(objs, fields)
        if "metadata" in fields:
            blind = self.model._meta.get_field("metadata_blind")
            for obj in objs:
                blind.pre_save(obj, False)
            fields = fields if "metadata_blind" in fields else [*fields, "metadata_blind"]
        return super().bulk_update(objs, fields, batch_size=batch_size)

    def _check_resealed(self, objs: list, fields: list[str]) -> None:
        """A move to or from an encrypted namespace writes every sealed field with it, each
        opened (plaintext on the instance, sealed afresh for the new namespace): a value
        still sealed would be stored bound to the old namespace (apps/memories/write_moves.py
        opens them first)."""
        if not any(sealing.namespace_encrypted(o.namespace_id) for o in objs) and not \
                self.model.objects.filter(pk__in=[o.pk for o in objs],
                                          namespace__encrypted=True).exists():
            return
        sealed = [self.model._meta.get_field(n).attname for n in sealing.sealed_fields(self.model)]
        if any(n not in fields for n in sealing.sealed_fields(self.model)) or any(
                n not in o.__dict__ or isinstance(o.__dict__[n], sealing.SealedValue)
                for o in objs for n in sealed):
            raise Conflict("memories moved to or from an encrypted namespace must be re-sealed: "
                           "move them with their opened content and metadata "
                           "(apps/memories/write_moves.py).", field="namespace")


class EventType(models.TextChoices):
    """What a conversation event records (issue 20): the hook events of a coding agent.
    An ordinary memory has none (``event_type`` ""); an event is stored only through
    ``POST /api/v1/events`` (apps/memories/services/events.py) and is append-only for
    agents."""

    SESSION_START = "session_start"
    USER_MESSAGE = "user_message"
    ASSISTANT_MESSAGE = "assistant_message"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    ASSISTANT_STOP = "assistant_stop"
    SESSION_END = "session_end"


class Memory(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="memories")
    content = sealing.SealedTextField(
        help_text="What the memory says; AES-256-GCM ciphertext in an encrypted namespace "
        "(apps/memories/sealing.py).")
    kind = models.CharField(max_length=32, choices=MemoryKind.choices, default=MemoryKind.FACT)
    tags = models.JSONField(default=list, blank=True)
    metadata = sealing.SealedMetadataField(default=dict, blank=True)
    #: In an encrypted namespace: each scalar metadata value's blind token (sealing.py),
    #: what equality filters, the subject lookup and Chroma's filter fields compare.
    metadata_blind = sealing.BlindMetadataField(null=True, blank=True, editable=False)
    agent_id = models.CharField(max_length=128, help_text="From the credential that stored it.")
    session_id = models.CharField(max_length=128, blank=True, default="")
    importance = models.FloatField(default=0.5, help_text="0..1")
    confidence = models.FloatField(default=1.0, help_text="0..1")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    last_recalled_at = models.DateTimeField(null=True, blank=True)
    access_count = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    occurred_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When what the memory records happened (client-supplied, e.g. a session's "
        "date); time filters and recency use it, falling back to created_at.")
    near_duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="near_duplicates",
        help_text="An older memory of the namespace this one closely resembles (cosine "
        "similarity above the namespace's threshold), linked at ingest.")
    context_memory = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        editable=False,
        help_text="The memory indexed with this one as its context: the one before it in "
        "its session when it was stored (apps/memories/context.py). Its words are in this "
        "memory's keyword row and embedding, so erasing it re-indexes this one.")
    content_hash = models.CharField(max_length=64, editable=False)
    #: The content hash while this memory is the one ingest stored for that content; the
    #: unique constraint below lets one of two concurrent identical ingests insert, and
    #: the other finds the winner instead (issue 16). NULL on rows that never claimed it
    #: (imported, or stored before the constraint). An edit of the content gives it up;
    #: a holder that has since expired (or whose words a raw write changed) is released
    #: by the next ingest of that content (writes._insert_claiming_slots), so the slot never blocks
    #: what dedup would store. NULL, not "":
    #: adding a nullable column is instant on a large table (SQLite would copy it for a
    #: default), and the constraint leaves NULLs out.
    dedup_slot = models.CharField(  # noqa: DJ001
        max_length=64, null=True, blank=True, editable=False)
    version = models.PositiveIntegerField(default=1)
    #: An event's type ("" for an ordinary memory), and who spoke (user, assistant, tool,
    #: system). The database default ("") lets migration 0016 add the columns without
    #: copying the table (SQLite's ADD COLUMN ... NOT NULL DEFAULT '').
    event_type = models.CharField(max_length=32, blank=True, default="", db_default="",
                                  choices=EventType.choices)
    role = models.CharField(max_length=32, blank=True, default="", db_default="")
    #: Consolidation (apps/lifecycle, docs/lifecycle.md): the memory that now says what
    #: this one said, and since when. A superseded memory is kept (unmerge brings it
    #: back) but left out of default lists and recall (``include_superseded``). Lineage,
    #: not an edit: no version (what the memory says is unchanged); the links and the
    #: audit log record who did it and when, and an as-of read compares superseded_at.
    superseded_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="supersedes",
        editable=False)
    superseded_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = MemoryQuerySet.as_manager()

    # What a service found about a memory (a duplicate, a near-duplicate's similarity,
    # read through a sharing grant) is not stored here: it rides beside it, in the result
    # objects of apps/memories/results.py.

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "memories"
        indexes = [
            models.Index(fields=["namespace", "-created_at"], name="memory_ns_created"),
            models.Index(fields=["namespace", "agent_id"], name="memory_ns_agent"),
            models.Index(fields=["namespace", "session_id", "-created_at"], name="memory_ns_session_created"),
            models.Index(fields=["namespace", "content_hash"], name="memory_ns_hash"),
            models.Index(fields=["agent_id"], name="memory_agent"),
            models.Index(fields=["namespace", "occurred_at"], name="memory_ns_occurred"),
            # A session's events in conversation order (GET /api/v1/events?session_id=).
            # Partial: only events are listed that way, so ordinary memories do not pay.
            models.Index(fields=["namespace", "session_id", "occurred_at", "created_at"],
                         condition=~Q(event_type=""), name="memory_ns_session_occurred"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["namespace", "dedup_slot"],
                                    condition=Q(dedup_slot__isnull=False),
                                    name="memory_one_per_content"),
        ]

    def __str__(self) -> str:
        return self.content[:60]

    @property
    def is_event(self) -> bool:
        """A conversation event (append-only for agents), not an ordinary memory."""
        return bool(self.event_type)

    def is_live(self, now) -> bool:
        """Not expired: the row-level twin of ``Memory.objects.live()``."""
        return self.expires_at is None or self.expires_at > now

    @property
    def event_time(self):
        """When it happened if the client said so, else when it was stored."""
        return self.occurred_at or self.created_at

    def is_valid_at(self, moment) -> bool:
        """Inside its validity window (open ends are unbounded)."""
        return ((self.valid_from is None or self.valid_from <= moment)
                and (self.valid_until is None or moment < self.valid_until))


class MemoryLink(models.Model):
    """A relation between two memories of one namespace found by consolidation
    (apps/lifecycle): ``derived_from`` (``source`` is the memory that now says what
    ``target`` said: the kept member or a merged text; target is superseded by it) or
    ``conflicts_with`` (two memories alike but for a number, a name, a date or a negation:
    both stay, shown together; stored once, source id < target id) or ``kept_apart`` (a
    person rejected merging the two: consolidation never groups them; stored once, the
    smaller id first). Erasing either memory removes the link (cascade)."""

    class Relation(models.TextChoices):
        DERIVED_FROM = "derived_from"
        CONFLICTS_WITH = "conflicts_with"
        KEPT_APART = "kept_apart"

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    source = models.ForeignKey(Memory, on_delete=models.CASCADE, related_name="links_out")
    target = models.ForeignKey(Memory, on_delete=models.CASCADE, related_name="links_in")
    relation = models.CharField(max_length=16, choices=Relation.choices)
    similarity = models.FloatField(null=True, blank=True)
    #: What differs between two conflicting memories (facet names: number, name, date,
    #: negation); empty for derived_from.
    differs_in = models.JSONField(default=list, blank=True)
    created_by = models.CharField(max_length=160)
    created_at = models.DateTimeField(default=timezone.now)

    objects = NamespaceScopedQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "target", "relation"],
                                               name="memorylink_unique")]
        indexes = [models.Index(fields=["target", "relation"], name="memorylink_target")]

    def __str__(self) -> str:
        return f"{self.source_id} {self.relation} {self.target_id}"


class MemoryTag(models.Model):
    """One row per (memory, tag): an index for tag filters that works on SQLite and PostgreSQL."""

    memory = models.ForeignKey(Memory, on_delete=models.CASCADE, related_name="tag_rows")
    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    tag = models.CharField(max_length=64)

    objects = NamespaceScopedQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["memory", "tag"], name="memorytag_unique")]
        indexes = [models.Index(fields=["namespace", "tag"], name="memorytag_ns_tag")]

    def __str__(self) -> str:
        return self.tag


class MemoryVersionQuerySet(sealing.SealedQuerySet):
    namespace_path = "memory__namespace"


class MemoryVersion(models.Model):
    """One edit of a memory: who, when, and each changed field's before and after."""

    memory = models.ForeignKey(Memory, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField(help_text="The memory's version after this edit.")
    changed_by = models.CharField(max_length=160)
    changed_at = models.DateTimeField(default=timezone.now)
    changes = sealing.SealedVersionChanges(
        help_text='{"field": {"before": ..., "after": ...}}; sealed in an encrypted namespace.')

    objects = MemoryVersionQuerySet.as_manager()

    class Meta:
        ordering = ["memory", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["memory", "version"], name="memoryversion_unique")
        ]
        # As-of recall finds the memories edited since a moment (recall/as_of.py).
        indexes = [models.Index(fields=["changed_at"], name="memoryversion_changed")]

    def __str__(self) -> str:
        return f"v{self.version} by {self.changed_by}"


class IndexOutbox(models.Model):
    """Pending vector-index work, written in the memory's own transaction.

    Inline indexing deletes its rows on success; whatever is left (Chroma was down)
    is replayed by ``drain_outbox``. Rows name memories by id without a foreign key so
    a pending delete outlives the memory it removes.
    """

    class Op(models.TextChoices):
        UPSERT = "upsert"
        DELETE = "delete"
        #: Filter fields only (tags, kind, metadata changed; the content did not): the
        #: replay keeps the stored vector instead of running the embedding model.
        METADATA = "metadata"

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    memory_id = models.UUIDField()
    op = models.CharField(max_length=8, choices=Op.choices)
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")

    objects = NamespaceScopedQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "index outbox"

    def __str__(self) -> str:
        return f"{self.op} {self.memory_id}"


class RecallDay(models.Model):
    """How many recalls a namespace answered on a day (UTC): the dashboard's "recalls per
    day". Counted per process and flushed with the recall statistics (recall_stats.py)."""

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["namespace", "day"], name="recallday_unique")]

    def __str__(self) -> str:
        return f"{self.day}: {self.count}"


class IdempotencyRecord(models.Model):
    """What an ingest with an ``Idempotency-Key`` produced, so a retry replays it.

    Scoped to the namespace and the caller; the body's hash tells a retry from a
    different request that reuses the key (refused with 409).
    """

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    principal = models.CharField(max_length=160)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    memory_ids = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["namespace", "principal", "key"],
                                               name="idempotency_unique")]

    def __str__(self) -> str:
        return self.key


class ExternalId(models.Model):
    """Another system's id for a memory: what an importer read (a mem0 id, seed 000's
    integer id, an export's original id) or what a drop-in route handed out (seed 000's
    clients address memories as ``/memory/42``).

    Re-running an import finds its records here and creates nothing new; the rows go
    with their memory (cascade), so an erasure leaves no mapping behind.
    """

    class System(models.TextChoices):
        MEMORYWEB = "memoryweb", "MemoryWeb export"
        MEM0 = "mem0", "mem0"
        CMM = "cmm", "seed 000 (CMM)"
        #: A conversation event's id as its client sent it: a repeated id is not stored twice.
        EVENT = "event", "conversation event"

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    system = models.CharField(max_length=16, choices=System.choices)
    external_id = models.CharField(max_length=128)
    memory = models.ForeignKey(Memory, on_delete=models.CASCADE, related_name="external_ids")
    #: Read from a source by an importer (True), or handed out here by a drop-in route:
    #: a re-import recognises its own records, and refuses to take over a handed-out id.
    imported = models.BooleanField(default=False)

    objects = NamespaceScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["namespace", "system", "external_id"],
                                    name="externalid_unique"),
            models.UniqueConstraint(fields=["memory", "system"], name="externalid_one_per_system"),
        ]

    def __str__(self) -> str:
        return f"{self.system}:{self.external_id}"


class ExternalIdSequence(models.Model):
    """The last number handed out per namespace and system (seed 000's integer ids).

    It only goes up: a deleted memory's number is never given to another one (a client
    still holding ``/memory/42`` must not reach someone else's memory), and an import
    raises it past the numbers it brought.
    """

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    system = models.CharField(max_length=16, choices=ExternalId.System.choices)
    last = models.BigIntegerField(default=0)

    objects = NamespaceScopedQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["namespace", "system"],
                                               name="externalidsequence_unique")]

    def __str__(self) -> str:
        return f"{self.system}: {self.last}"


# The dashboard's bulk jobs (their own module; imported here so Django registers the model).
from apps.memories.bulk_models import BulkJob  # noqa: E402, F401


class KeywordChange(models.Model):
    """One change to a namespace's keyword index: which memory, not what it says.

    Written by ``lexical.add/remove/replace`` in the write's own transaction when
    ``MEMORYWEB_KEYWORD_ENGINE`` is ``"memory"``, and for a small namespace without its
    FTS5 table whatever the engine (small_keywords.py), so every process's in-memory keyword
    index (apps/memories/keyword_index.py) learns of it at its next search: the id is
    re-read from memories_memory (present: indexed as it is now; gone: dropped). Ids and
    operation names only, never text; rows older than ``MEMORYWEB_KEYWORD_LOG_MINUTES``
    are pruned (a process that fell further behind rebuilds the namespace from SQL).
    """

    class Op(models.TextChoices):
        ADD = "add"
        REMOVE = "remove"
        #: Every process rebuilds the namespace from SQL (``reindex``).
        REBUILD = "rebuild"

    #: The sequence number processes remember (the primary key).
    id = models.BigAutoField(primary_key=True)
    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+",
                                  db_index=False)
    memory_id = models.UUIDField(null=True, blank=True)
    op = models.CharField(max_length=8, choices=Op.choices)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["namespace", "id"], name="keywordchange_ns_seq")]

    def __str__(self) -> str:
        return f"{self.op} {self.memory_id}"


class AgentRecord(models.Model):
    """An agent's track record in a namespace: how many of its memories were stored, and
    how many times they were later corrected by someone else or deleted. Counted by the
    write path (apps/memories/writes.py); read by strength (apps/memories/strength.py),
    where a source that is often corrected makes its memories weaker. Erasures are not
    counted (a data subject's erasure, or forgetting, says nothing about the agent).
    Counts only, never ids."""

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    agent_id = models.CharField(max_length=128)
    stored = models.PositiveIntegerField(default=0)
    corrected = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)

    objects = NamespaceScopedQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["namespace", "agent_id"],
                                               name="agentrecord_unique")]

    def __str__(self) -> str:
        return f"{self.agent_id}: {self.stored} stored"


class PlainVector(models.Model):
    """A memory's content embedded alone (apps/memories/plain_vectors.py): what the next
    turn of its session mixes into its own vector, and what consolidation compares, kept
    so neither embeds it again. A cache: used only while ``content_hash`` and ``model``
    match the memory and the embedder; goes with the memory (cascade)."""

    memory = models.OneToOneField(Memory, on_delete=models.CASCADE, primary_key=True,
                                  related_name="+")
    content_hash = models.CharField(max_length=64)
    model = models.CharField(max_length=128)
    vector = models.BinaryField(help_text="float32, little-endian, the embedder's dimension.")

    def __str__(self) -> str:
        return f"plain vector of {self.memory_id}"
