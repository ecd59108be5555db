"""The memory service layer: every door (REST, WebSocket, MCP, admin, commands) calls these.

Each function takes the acting :class:`Principal`, validates its input with the
shared schemas, checks the role, writes SQL and the outbox in one transaction and
indexes after the commit. Doors only translate their protocol.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.audit.log import record as audit
from apps.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unavailable,
)
from apps.live import events as live
from apps.memories import fusion, indexing, lexical, ranking, recall_stats, schemas, sharing
from apps.memories.embeddings import get_embedder
from apps.memories.models import (
    IdempotencyRecord,
    IndexOutbox,
    Memory,
    MemoryTag,
    MemoryVersion,
    content_hash,
)
from apps.memories.vectorstore import META_KEY, TAG_KEY, get_vector_store
from apps.ops import metrics
from apps.tenancy.models import Namespace, NearDuplicatePolicy
from apps.tenancy.principal import Principal
from apps.tenancy.roles import Action
from apps.tenancy.services import authorize, resolve_namespace

log = logging.getLogger(__name__)

#: Threads for the vector side of hybrid recalls (one per concurrent hybrid recall).
_channel_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="recall-vector")

#: Fields an edit may change and that a version records.
EDITABLE_FIELDS = (
    "content", "kind", "tags", "metadata", "importance", "confidence",
    "expires_at", "valid_from", "valid_until", "occurred_at",
)


@dataclass(frozen=True)
class RecallHit:
    memory: Memory
    score: float
    #: channel -> {"raw", "rank", "contribution"}; contributions add up to ``score``.
    parts: dict[str, dict[str, float]] = field(default_factory=dict)
    #: From a namespace that shares with the caller's (``include_shared``), read-only.
    shared: bool = False


# --- ingest -----------------------------------------------------------------------

@metrics.observed("ingest")
def ingest(principal: Principal, data: Mapping[str, Any], namespace: str | None = None, *,
           idempotency_key: str | None = None) -> Memory:
    """Store one memory for ``principal`` (agent role or above).

    Identical content already live in the namespace is not stored twice: that memory is
    returned with ``duplicate = True``. With an ``idempotency_key`` a retry of the same
    request returns what the first one stored.
    """
    if not isinstance(data, Mapping):
        raise InvalidInput("expected a JSON object.")
    ns = resolve_namespace(principal, data.get("namespace") or namespace)
    authorize(principal, ns.pk, Action.INGEST)
    check_writable(ns)
    cleaned = schemas.validate(schemas.MemoryInput, data)
    _check_same_namespace(ns, cleaned, "namespace")
    return _store_once(principal, ns, [cleaned], idempotency_key, data)[0]


@metrics.observed("ingest")
def ingest_many(principal: Principal, items: Sequence[Mapping[str, Any]],
                namespace: str | None = None, *, idempotency_key: str | None = None) -> list[Memory]:
    """Store up to ``max_batch`` memories in one namespace, all or nothing (dedup as ingest)."""
    limit = settings.MEMORYWEB_LIMITS["max_batch"]
    if not items:
        raise InvalidInput("no memories given.", field="memories")
    if len(items) > limit:
        raise InvalidInput(f"{len(items)} memories; a batch holds at most {limit}.",
                           field="memories", code="too_many")
    ns = resolve_namespace(principal, namespace)
    authorize(principal, ns.pk, Action.INGEST)
    check_writable(ns)
    cleaned = []
    for i, item in enumerate(items):  # validate everything before writing anything
        data = schemas.validate(schemas.MemoryInput, item, prefix=f"memories[{i}]")
        _check_same_namespace(ns, data, f"memories[{i}].namespace")
        cleaned.append(data)
    return _store_once(principal, ns, cleaned, idempotency_key, list(items))


def check_writable(ns: Namespace) -> None:
    """An archived namespace keeps its memories readable and refuses every write."""
    if ns.archived_at is not None:
        raise Conflict(f"namespace {ns.slug!r} is archived; writes are refused until a system "
                       "admin unarchives it.", field="namespace")


def _check_same_namespace(ns: Namespace, data: dict[str, Any], field: str) -> None:
    other = data.pop("namespace", None)
    if other and other != ns.slug:
        raise InvalidInput(f"namespace {other!r} differs from the request's namespace {ns.slug!r}.",
                           field=field)


class _KeyTaken(Exception):
    """Another request recorded this Idempotency-Key first: raised inside the store's
    transaction so everything it wrote so far rolls back."""


def _store_once(principal: Principal, ns: Namespace, cleaned: list[dict[str, Any]],
                idempotency_key: str | None, raw: Any) -> list[Memory]:
    """``_store`` behind an optional Idempotency-Key: a retry replays the first result.

    The key's record is inserted first, in the transaction that stores the memories, so
    the unique constraint on (namespace, principal, key) picks one of several concurrent
    requests: the others' insert fails (PostgreSQL makes them wait for the winner's
    commit; SQLite's IMMEDIATE transactions run one after another), their transaction
    rolls back having written nothing, and they answer from the winner's record: its
    memories, or 409 for a different body. A check before the insert would let every
    concurrent request through (issue 16).
    """
    if not idempotency_key:
        return _store(principal, ns, cleaned)
    if len(idempotency_key) > 255:
        raise InvalidInput("Idempotency-Key is at most 255 characters.", field="Idempotency-Key")
    request_hash = hashlib.sha256(
        json.dumps(raw, sort_keys=True, default=str, separators=(",", ":")).encode()).hexdigest()
    scope = {"namespace": ns, "principal": principal.label, "key": idempotency_key}
    for _ in range(3):  # a record can vanish between the failed insert and the read (retention)
        record = IdempotencyRecord.objects.filter(**scope).first()  # a retry skips the embedding
        if record is None:
            try:
                return _store(principal, ns, cleaned, claim=IdempotencyRecord(
                    **scope, request_hash=request_hash, memory_ids=[]))
            except _KeyTaken:  # a concurrent request with the key committed first
                record = IdempotencyRecord.objects.filter(**scope).first()
        if record is not None:
            return _replay(record, request_hash)
    raise Unavailable("the Idempotency-Key's record changed under concurrent requests; retry.")


def _replay(record: IdempotencyRecord, request_hash: str) -> list[Memory]:
    """What the request that recorded the key stored, or 409 for a different request."""
    if record.request_hash != request_hash:
        raise Conflict("this Idempotency-Key was used for a different request.",
                       field="Idempotency-Key")
    rows = Memory.objects.select_related("namespace").in_bulk(record.memory_ids)
    replayed = []
    for memory_id in record.memory_ids:
        memory = rows.get(uuid.UUID(memory_id))
        if memory is None:
            raise Conflict("what this Idempotency-Key stored has since been deleted.",
                           field="Idempotency-Key")
        memory.duplicate = True
        replayed.append(memory)
    return replayed


def _store(principal: Principal, ns: Namespace, cleaned: list[dict[str, Any]],
           claim: IdempotencyRecord | None = None) -> list[Memory]:
    """Write validated memories + tag rows + outbox in one transaction, then index.

    Content identical (after whitespace normalisation) to a live memory of the
    namespace, or to an earlier item of the same batch, is not written again: the
    existing memory takes its place in the result, marked ``duplicate``. Near-duplicates
    (by embedding) are then linked, skipped or kept per the namespace's policy.

    Concurrent identical ingests: each new memory claims its content's ``dedup_slot``
    (unique per namespace), so only one insert succeeds; the others find the winner's
    memory and return it as a duplicate, writing nothing for it (no row, audit entry,
    outbox row, vector or live event). ``claim``: an Idempotency-Key record, inserted
    first in the same transaction (raises ``_KeyTaken`` if another request holds it).
    """
    hashes = [content_hash(d["content"]) for d in cleaned]
    existing = _live_by_hash(ns, hashes)
    now = timezone.now()
    fresh: dict[str, Memory] = {}
    for data, digest in zip(cleaned, hashes, strict=True):
        if digest not in existing and digest not in fresh:
            fresh[digest] = Memory(id=uuid.uuid4(), namespace=ns, agent_id=principal.agent_id,
                                   content_hash=digest, dedup_slot=digest, created_at=now,
                                   updated_at=now, **data)
    memories = list(fresh.values())
    embeddings = None
    if memories:
        embeddings = indexing.embed_contents([m.content for m in memories])
        skipped = _near_duplicates(ns, memories, embeddings)
        if skipped:  # skip policy: the near-duplicate stands in for the new memory
            keep = [i for i, m in enumerate(memories) if m.pk not in skipped]
            for digest, memory in fresh.items():
                if memory.pk in skipped:
                    existing[digest] = skipped[memory.pk]
            memories = [memories[i] for i in keep]
            embeddings = embeddings[keep] if embeddings is not None else None
    if not memories and claim is None:
        return _answer(hashes, existing, fresh)  # nothing to write: no transaction
    with transaction.atomic():
        if claim is not None:
            try:
                claim.save(force_insert=True)
            except IntegrityError:  # leaves the block: the whole transaction rolls back
                raise _KeyTaken from None
        if memories:
            memories, embeddings = _insert_claiming_slots(ns, memories, embeddings, existing)
        if memories:
            lexical.add(ns.pk, [m.pk for m in memories])
            MemoryTag.objects.bulk_create(
                [MemoryTag(memory=m, namespace=ns, tag=t) for m in memories for t in m.tags]
            )
            outbox = IndexOutbox.objects.bulk_create(
                [IndexOutbox(namespace=ns, memory_id=m.pk, op=IndexOutbox.Op.UPSERT) for m in memories]
            )
            audit(principal, "memory.create", namespace=ns, record_ids=[m.pk for m in memories],
                  summary={"count": len(memories), "requested": len(cleaned),
                           "near_duplicates_linked": sum(m.near_duplicate_of_id is not None
                                                         for m in memories)})
            live.memories_changed("created", ns, memories, embeddings, principal)
        result = _answer(hashes, existing, fresh)
        if claim is not None:
            claim.memory_ids = [str(m.pk) for m in result]
            claim.save(update_fields=["memory_ids"])
    if memories:
        indexing.index_inline(ns, memories, embeddings, [o.pk for o in outbox], fresh=True)
        metrics.MEMORIES_STORED.inc(len(memories))
    return result


def _live_by_hash(ns: Namespace, hashes: Sequence[str]) -> dict[str, Memory]:
    """The namespace's live memory for each content hash that has one (the oldest)."""
    found: dict[str, Memory] = {}
    for memory in (Memory.objects.live().select_related("namespace")
                   .filter(namespace=ns, content_hash__in=set(hashes)).order_by("-created_at")):
        found[memory.content_hash] = memory  # oldest wins
    return found


def _insert_claiming_slots(ns: Namespace, memories: list[Memory], embeddings: np.ndarray | None,
                           existing: dict[str, Memory]) -> tuple[list[Memory], np.ndarray | None]:
    """Insert new memories (inside the store's transaction), each claiming its content's
    dedup slot; what a concurrent ingest claimed first is replaced by its memory.

    Insert first, look after a conflict: the unique constraint, not a prior read, decides
    who stores. On a conflict the insert's savepoint rolls back and the winners are read
    (PostgreSQL has waited for their commit, and READ COMMITTED shows it to the next
    statement; on SQLite they committed before this transaction took the write lock).
    Their memories go into ``existing``; slots held by memories that have since expired
    (or whose words a job changed around the services) are released; the rest is
    inserted again. Rows go in content-hash order, so concurrent batches take the slots'
    locks in one order and never deadlock. Returns the memories inserted and their
    embeddings.
    """
    for _ in range(len(memories) + 3):  # each conflict settles at least one slot
        try:
            with transaction.atomic():
                Memory.objects.bulk_create(sorted(memories, key=lambda m: m.content_hash))
            return memories, embeddings
        except IntegrityError:
            pass
        digests = [m.content_hash for m in memories]
        winners = _live_by_hash(ns, digests)
        Memory.objects.filter(namespace=ns, dedup_slot__in=digests).filter(
            Q(expires_at__lte=timezone.now()) | ~Q(content_hash=F("dedup_slot"))
        ).update(dedup_slot=None)
        if winners:
            memories, embeddings = _drop_taken(memories, embeddings, winners, existing)
            if not memories:
                return [], None
    raise Unavailable("concurrent writes of the same content kept conflicting; retry.")


def _drop_taken(memories: list[Memory], embeddings: np.ndarray | None,
                winners: dict[str, Memory], existing: dict[str, Memory],
                ) -> tuple[list[Memory], np.ndarray | None]:
    """Leave out the new memories whose content a concurrent ingest stored (``winners``):
    the winner takes their place in ``existing``, and so in the answer, and in any link
    or skip-policy stand-in of this batch that pointed at them."""
    replaced = {m.pk: winners[m.content_hash] for m in memories if m.content_hash in winners}
    keep = [i for i, m in enumerate(memories) if m.pk not in replaced]
    kept = [memories[i] for i in keep]
    for memory in kept:
        if memory.near_duplicate_of_id in replaced:
            memory.near_duplicate_of = replaced[memory.near_duplicate_of_id]
    for digest, stand_in in list(existing.items()):
        if stand_in.pk in replaced:  # a skip-policy stand-in for a memory never stored
            substitute = copy.copy(replaced[stand_in.pk])
            substitute.near_duplicate_similarity = stand_in.near_duplicate_similarity
            existing[digest] = substitute
    existing.update(winners)
    return kept, (embeddings[keep] if embeddings is not None else None)


def _answer(hashes: Sequence[str], existing: Mapping[str, Memory],
            fresh: Mapping[str, Memory]) -> list[Memory]:
    """One memory per requested item, in order: stored now, or the one that already was
    (``duplicate``, as is a repeat of the same content within the batch)."""
    result = []
    returned: set[str] = set()
    for digest in hashes:
        if digest in existing:
            memory = existing[digest]
            memory.duplicate = True
        else:
            memory = fresh[digest]
            if digest in returned:  # the same content twice in one batch
                memory = copy.copy(memory)
                memory.duplicate = True
        returned.add(digest)
        result.append(memory)
    return result


def _near_duplicates(ns: Namespace, memories: Sequence[Memory],
                     embeddings: np.ndarray | None) -> dict[uuid.UUID, Memory]:
    """Find each new memory's closest match (stored, or earlier in the batch) and apply
    the namespace's policy: ``link`` sets ``near_duplicate_of``, ``skip`` returns the
    new memory's id mapped to the match that replaces it, ``keep`` does nothing.

    Best effort: without embeddings or with the vector index down, nothing is linked
    (the write itself must not fail for it).
    """
    if ns.near_duplicate_policy == NearDuplicatePolicy.KEEP or embeddings is None:
        return {}
    threshold = ns.near_duplicate_threshold or settings.MEMORYWEB_NEAR_DUPLICATE_THRESHOLD
    try:
        stored = get_vector_store().nearest(ns, embeddings)
    except Exception as exc:  # the index is down: store without linking
        log.warning("near-duplicate check skipped: %s", exc)
        stored = [None] * len(memories)
    stored_ids = {uuid.UUID(hit.id) for hit in stored if hit and hit.similarity >= threshold}
    targets = Memory.objects.live().filter(namespace=ns).in_bulk(stored_ids) if stored_ids else {}
    within = embeddings @ embeddings.T  # unit vectors: cosine similarity
    skipped: dict[uuid.UUID, Memory] = {}
    for i, memory in enumerate(memories):
        best, similarity = None, threshold
        hit = stored[i]
        if hit and hit.similarity >= similarity and uuid.UUID(hit.id) in targets:
            best, similarity = targets[uuid.UUID(hit.id)], hit.similarity
        for j in range(i):  # an earlier item of the same batch (itself not skipped)
            if within[i, j] >= similarity and memories[j].pk not in skipped:
                best, similarity = memories[j], float(within[i, j])
        if best is None:
            continue
        if ns.near_duplicate_policy == NearDuplicatePolicy.SKIP:
            stand_in = copy.copy(best)
            stand_in.near_duplicate_similarity = min(similarity, 1.0)
            skipped[memory.pk] = stand_in
        else:
            memory.near_duplicate_of = best
            memory.near_duplicate_similarity = min(similarity, 1.0)
    return skipped


# --- read ---------------------------------------------------------------------------

def get(principal: Principal, memory_id: Any) -> Memory:
    """One live memory the principal may read, in its namespaces or shared with one of
    them by a live grant; NotFound otherwise (never says which)."""
    try:
        return _visible(principal, memory_id, Memory.objects.live())
    except NotFound:
        memory = _shared(principal, memory_id, Memory.objects.live())
        if memory is None:
            raise
        memory.shared_with_caller = True
        return memory


def versions(principal: Principal, memory_id: Any):
    """A memory's edit history, newest first. Only for its own namespace's principals:
    past versions may hold content a sharing grant's scope no longer (or never) covered."""
    return _visible(principal, memory_id, Memory.objects.live()).versions.all()


def _pk(memory_id: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(memory_id))
    except ValueError:
        raise NotFound("memory not found.") from None


def _visible(principal: Principal, memory_id: Any, queryset) -> Memory:
    pk = _pk(memory_id)
    memory = queryset.for_principal(principal).select_related("namespace").filter(pk=pk).first()
    if memory is None:
        raise NotFound("memory not found.")
    return memory


def _shared(principal: Principal, memory_id: Any, queryset) -> Memory | None:
    """The memory if a live grant shares it with a namespace the principal reads."""
    condition = sharing.shared_with(principal)
    if condition is None:
        return None
    return queryset.filter(condition, pk=_pk(memory_id)).select_related("namespace").first()


def _editable(principal: Principal, memory_id: Any) -> Memory:
    """A memory to edit or delete: expired ones too (they are not served, but they exist).

    A memory shared with the caller is visible but read-only: 403, not 404.
    """
    try:
        memory = _visible(principal, memory_id, Memory.objects.all())
    except NotFound:
        if _shared(principal, memory_id, Memory.objects.all()) is not None:
            raise PermissionDenied("this memory is shared with your namespace read-only; "
                                   "only its own namespace may change it.") from None
        raise
    authorize(principal, memory.namespace_id, Action.EDIT)
    check_writable(memory.namespace)
    return memory


def list_memories(principal: Principal, namespace: str | None = None):
    """Memories the principal may read, newest first; one namespace or all it can see."""
    queryset = Memory.objects.for_principal(principal).live().select_related("namespace")
    if namespace:
        ns = resolve_namespace(principal, namespace)
        authorize(principal, ns.pk, Action.READ)
        queryset = queryset.filter(namespace=ns)
    return queryset.order_by("-created_at", "-pk")


def _where(filters: Mapping[str, Any]) -> dict | None:
    """Recall filters as one Chroma ``where`` clause (all scalar, all pushed down)."""
    clauses: list[dict] = []
    for name in ("agent_id", "session_id", "kind"):
        if filters.get(name):
            clauses.append({name: filters[name]})
    for tag in filters.get("tags") or []:
        clauses.append({TAG_KEY + tag: True})
    any_of = [{TAG_KEY + tag: True} for tag in filters.get("tags_any") or []]
    if any_of:
        clauses.append(any_of[0] if len(any_of) == 1 else {"$or": any_of})
    if filters.get("created_after"):
        clauses.append({"created_ts": {"$gte": filters["created_after"].timestamp()}})
    if filters.get("created_before"):
        clauses.append({"created_ts": {"$lt": filters["created_before"].timestamp()}})
    if filters.get("occurred_after"):
        clauses.append({"event_ts": {"$gte": filters["occurred_after"].timestamp()}})
    if filters.get("occurred_before"):
        clauses.append({"event_ts": {"$lt": filters["occurred_before"].timestamp()}})
    for key, value in (filters.get("metadata") or {}).items():
        clauses.append({META_KEY + key: value})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


@dataclass
class RecallResult:
    namespace: Namespace
    query: str
    k: int
    hits: list[RecallHit]
    #: The keyword query as the lexical engine saw it (lexical and hybrid modes).
    lexical_query: str | None = None
    #: Query terms left out of the keyword query as too common.
    lexical_dropped: tuple[str, ...] = ()
    mode: str = "vector"
    explain: bool = False
    #: The ranking settings in force (request over namespace over server).
    options: ranking.RecallOptions | None = None
    #: Milliseconds per stage (embed, vector, lexical, sql, rank), for Server-Timing.
    timings: dict[str, float] = field(default_factory=dict)
    #: The namespaces searched: the caller's own, then those sharing with it.
    sources: list[sharing.Source] = field(default_factory=list)


class _Stopwatch:
    def __init__(self, timings: dict[str, float], stage: str):
        self.timings, self.stage = timings, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        elapsed = (time.perf_counter() - self.start) * 1000
        self.timings[self.stage] = self.timings.get(self.stage, 0.0) + elapsed


@metrics.observed("recall")
def recall(principal: Principal, data: Mapping[str, Any], *, namespace: str | None = None,
           exclude_ids: Sequence[str] = (),
           on_lexical: Callable[[list[tuple[uuid.UUID, float]]], None] | None = None,
           ) -> RecallResult:
    """The ``k`` memories that best answer ``query`` among those matching the filters.

    ``mode`` picks the channels: ``vector`` (meaning, Chroma), ``lexical`` (keywords,
    the SQL full-text index) or ``hybrid`` (both, fused with recency, importance and
    the optional reranker). ``ranking.finish`` then applies the minimum score and MMR.
    Ranking settings come from the request, else the namespace, else the server. Every
    hit keeps its per-input parts for ``explain``. ``on_lexical`` (the WebSocket door's
    streaming) gets the keyword channel's ranked ids as soon as they are known, while
    the vector side may still run.

    With ``include_shared`` every namespace that currently grants the caller's namespace
    access is searched too, within its grants' scope, and all candidates are ranked
    together as if they were one namespace (see ``_search_channels``).
    """
    params = schemas.validate(schemas.RecallInput, data)
    ns = resolve_namespace(principal, params.get("namespace") or namespace)
    authorize(principal, ns.pk, Action.READ)
    options = _recall_options(ns, params)
    k, mode = params["k"], options.mode
    filters = params.get("filters") or {}
    sources = sharing.sources(ns, params["include_shared"])
    result = RecallResult(ns, params["query"], k, [], mode=mode, explain=params["explain"],
                          options=options, sources=sources)
    excluded = {uuid.UUID(str(i)) for i in exclude_ids}
    depth = options.candidate_depth(k)
    # Each channel proposes more than k in hybrid mode so the fusion has candidates to
    # agree on. If SQL drops hits (expired, outside their validity, just deleted), the
    # search widens.
    pool = depth if mode != "hybrid" else max(4 * k, depth, settings.MEMORYWEB_HYBRID_POOL)
    embedding: dict[str, Any] = {}  # the query vector, computed once even if the search widens
    while True:
        channels = _search_channels(sources, params["query"], mode, filters, pool, excluded,
                                    result, embedding, on_lexical)
        on_lexical = None  # once: a widened search does not stream again
        scored = fusion.single(mode, channels[mode]) if mode != "hybrid" else fusion.fuse(
            channels, options.fusion, options.weights)
        if mode == "hybrid":
            scored = _session_context(scored, filters, options, result)
        with _Stopwatch(result.timings, "sql"):
            candidates = _hydrate(sources, scored, depth, filters)
        exhausted = all(len(found) < pool for found in channels.values())
        if len(candidates) >= depth or exhausted or pool >= 8 * depth + 64:
            break
        pool *= 4
    with _Stopwatch(result.timings, "rank"):
        finished = ranking.finish(params["query"], candidates, options, k,
                                  lambda ids: _embeddings(candidates, ids))
    result.hits = [RecallHit(c.memory, c.score, c.parts, shared=c.memory.namespace_id != ns.pk)
                   for c in finished]
    recall_stats.note_recall(ns.pk)
    if result.hits:
        _note_recalled([h.memory for h in result.hits if not h.shared])
        for hit in result.hits:
            hit.memory.shared_with_caller = hit.shared
        live.memories_recalled(ns, [h.memory.pk for h in result.hits if not h.shared], principal)
    if _audits_reads(ns):
        with transaction.atomic():
            audit(principal, "memory.recall", namespace=ns,
                  record_ids=[h.memory.pk for h in result.hits],
                  summary={"k": k, "mode": mode, "results": len(result.hits),
                           "include_shared": params["include_shared"]})
    metrics.RECALLS.labels(mode).inc()
    return result


def _recall_options(ns: Namespace, params: Mapping[str, Any]) -> ranking.RecallOptions:
    """The ranking settings in force, refused (400) if every recall would be empty under
    them or one would be ignored: the request's over the namespace's over the server's."""
    options = ranking.options_for(ns, params)
    ranking.check(options, {**(ns.recall_defaults or {}), **params})
    return options


def _audits_reads(ns: Namespace) -> bool:
    """Recalls are audited where the namespace (else the server) says so: an entry per
    recall turns every read into a write."""
    return settings.MEMORYWEB_AUDIT_READS if ns.audit_reads is None else ns.audit_reads


def _session_context(scored: list[fusion.Fused], filters: Mapping[str, Any],
                     options: ranking.RecallOptions, result: RecallResult) -> list[fusion.Fused]:
    """Hybrid: the ``session`` input (``fusion.session_context``), weighted like a channel.

    Skipped when the recall is filtered to one session: every candidate shares it, so
    the input would carry no information. Costs one primary-key query (~0.3 ms).
    """
    weight = options.weights.get("session", 0.0)
    if weight <= 0 or filters.get("session_id") or len(scored) < 2:
        return scored
    channels = sum(options.weights.get(name, 1.0) for name in ranking.RETRIEVAL_CHANNELS)
    with _Stopwatch(result.timings, "sql"):
        sessions = _sessions_of([entry.item for entry in scored])
    return fusion.session_context(scored, sessions, weight / (channels or 1.0))


def _sessions_of(ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """id -> session of those memories that have one, as ``<namespace id>:<session_id>``
    (two namespaces may use the same session names). Raw SQL by primary key: the ORM
    spends more building this query than the database spends answering it (measured
    at 100 ids: 1.1 ms vs 0.3 ms on SQLite)."""
    pk = Memory._meta.pk
    by_db_value = {pk.get_db_prep_value(i, connection): i for i in ids}
    sql = (f"SELECT id, namespace_id, session_id "
           f"FROM {connection.ops.quote_name(Memory._meta.db_table)} "
           f"WHERE id IN ({', '.join(['%s'] * len(by_db_value))}) AND session_id <> ''")
    with connection.cursor() as cursor:
        cursor.execute(sql, list(by_db_value))
        return {by_db_value[row[0]]: f"{row[1]}:{row[2]}" for row in cursor.fetchall()}


def _hydrate(sources: Sequence[sharing.Source], scored: Sequence[fusion.Fused], depth: int,
             filters: Mapping[str, Any]) -> list[ranking.Candidate]:
    """The first ``depth`` ranked ids that are servable rows of the sources, from SQL.

    Servable: live (not expired) and, unless ``include_invalid``, inside the validity
    window at ``valid_at`` (default now). Both are rare exclusions, so they are checked
    on the fetched rows rather than pushed into every channel. Loads ``depth`` rows
    first and only reads further down the ranking when some were dropped. By primary
    key only: with a namespace condition in the query SQLite's planner scans the
    namespace's index instead (measured: 4.6 ms vs 0.5 ms at 10k memories); the
    namespace, and for a shared namespace the grants' scope, is checked on the fetched
    rows instead.
    """
    by_namespace = {source.namespace.pk: source for source in sources}
    found: list[ranking.Candidate] = []
    now = timezone.now()
    valid_at = None if filters.get("include_invalid") else (filters.get("valid_at") or now)
    start, size = 0, depth
    while len(found) < depth and start < len(scored):
        window = scored[start : start + size]
        rows = Memory.objects.in_bulk([entry.item for entry in window])
        for entry in window:
            memory = rows.get(entry.item)
            source = by_namespace.get(memory.namespace_id) if memory is not None else None
            if (source is not None and source.covers(memory) and memory.is_live(now)
                    and (valid_at is None or memory.is_valid_at(valid_at))):
                memory.namespace = source.namespace  # no join, no per-row query
                found.append(ranking.Candidate(memory, entry.score, entry.parts))
        start, size = start + size, size * 2
    return found[:depth]


def _embeddings(candidates: Sequence[ranking.Candidate], ids: Sequence[str]) -> dict[str, Any]:
    """Stored vectors of ``ids`` (MMR, reranking), asked of each namespace's collection."""
    namespaces = {str(c.memory.pk): c.memory.namespace for c in candidates}
    by_namespace: dict[int, list[str]] = {}
    for memory_id in ids:
        by_namespace.setdefault(namespaces[memory_id].pk, []).append(memory_id)
    vectors: dict[str, Any] = {}
    for group in by_namespace.values():
        vectors.update(get_vector_store().embeddings(namespaces[group[0]], group))
    return vectors


def _search_channels(sources: Sequence[sharing.Source], query: str, mode: str,
                     filters: Mapping[str, Any], n: int, excluded: set[uuid.UUID],
                     result: RecallResult, embedding: dict[str, Any],
                     on_lexical: Callable[[list[tuple[uuid.UUID, float]]], None] | None = None,
                     ) -> dict[str, list[tuple[uuid.UUID, float]]]:
    """Ask each channel of ``mode`` for ``n`` candidates, best first, across the sources.

    In hybrid mode the vector side (model + Chroma, no database) runs on a helper thread
    while this thread asks SQL; both release the GIL while they work.

    Several sources (``include_shared``): each channel asks every source for ``n``
    candidates and keeps the ``n`` best of all, treating every source alike (no source
    wins for being the caller's, first, larger or smaller), and fusion then runs once.
    Vector candidates compare by cosine similarity: one embedding model, so identical
    content scores identically anywhere. Keyword candidates compare by their rank within
    their own namespace (``_by_rank``): BM25 uses each namespace's own term statistics
    (lexical.py), so its scores do not compare across namespaces, and a grantor's raw
    scores would tell a grantee how common a word is among memories it was not shown.
    """
    def vector() -> list[tuple[uuid.UUID, float]]:
        return _best([_vector_channel(s, query, filters, n, excluded, result, embedding)
                      for s in sources], n)

    def keyword() -> list[tuple[uuid.UUID, float]]:
        found = [_lexical_channel(s, query, filters, n, excluded, result) for s in sources]
        hits = _best([_by_rank(hits) for hits in found] if len(found) > 1 else found, n)
        if on_lexical is not None:
            on_lexical(hits)
        return hits

    if mode == "vector":
        return {"vector": vector()}
    if mode == "lexical":
        return {"lexical": keyword()}
    pending = _channel_pool.submit(vector)
    lexical_hits = keyword()
    return {"lexical": lexical_hits, "vector": pending.result()}


def _by_rank(hits: list[tuple[uuid.UUID, float]]) -> list[tuple[uuid.UUID, float]]:
    """Replace scores by 1 / (60 + rank): the reciprocal-rank scale, the same for every
    namespace whatever its size or vocabulary."""
    return [(pk, 1.0 / (fusion.RRF_K + rank)) for rank, (pk, _) in enumerate(hits, start=1)]


def _best(lists: Sequence[list[tuple[uuid.UUID, float]]], n: int) -> list[tuple[uuid.UUID, float]]:
    """One source: its list. Several: the ``n`` highest scores of all, ties by id."""
    if len(lists) == 1:
        return lists[0]
    merged = [hit for hits in lists for hit in hits]
    merged.sort(key=lambda hit: (-hit[1], str(hit[0])))
    return merged[:n]


def _vector_channel(source: sharing.Source, query: str, filters: Mapping[str, Any], n: int,
                    excluded: set[uuid.UUID], result: RecallResult, embedding: dict[str, Any],
                    ) -> list[tuple[uuid.UUID, float]]:
    """Nearest neighbours in Chroma (cosine similarity), filters and grant scope applied
    inside Chroma."""
    if "vector" not in embedding:
        with _Stopwatch(result.timings, "embed"):
            embedding["vector"] = get_embedder().embed([query])[0]
    vector = embedding["vector"]
    where = _and(_where(filters), source.where())
    try:
        with _Stopwatch(result.timings, "vector"):
            hits = get_vector_store().query(source.namespace, vector, n + len(excluded), where)
    except Exception as exc:
        log.warning("vector recall failed: %s", exc)
        raise Unavailable("the vector index is unavailable; retry shortly.") from exc
    return [(uuid.UUID(h.id), h.similarity) for h in hits if uuid.UUID(h.id) not in excluded][:n]


def _and(*clauses: dict | None) -> dict | None:
    """Chroma ``where`` clauses joined with ``$and`` (None ones left out)."""
    present = [clause for clause in clauses if clause]
    if len(present) < 2:
        return present[0] if present else None
    return {"$and": present}


def _lexical_channel(source: sharing.Source, query: str, filters: Mapping[str, Any], n: int,
                     excluded: set[uuid.UUID], result: RecallResult) -> list[tuple[uuid.UUID, float]]:
    """Keyword matches from the SQL full-text index, filters and grant scope applied in
    the same query. The explain fields describe the caller's own namespace's query."""
    ns = source.namespace
    lexical_query = lexical.build_query(query)
    if not source.shared:  # a grantor's frequencies would show through what is dropped
        lexical_query = lexical.prune_common(lexical_query, ns.pk)
        result.lexical_query = lexical_query.engine_query
        result.lexical_dropped = lexical_query.dropped
    candidates = None
    if any(filters.values()) or not source.unrestricted:
        candidates = source.restrict(_filtered(Memory.objects.filter(namespace=ns), filters))
    with _Stopwatch(result.timings, "lexical"):
        found = lexical.search(ns.pk, lexical_query, n + len(excluded), candidates)
    return [(pk, score) for pk, score in found if pk not in excluded][:n]


def _filtered(queryset, filters: Mapping[str, Any]):
    """Recall filters as SQL conditions: the same meaning as ``_where`` has in Chroma."""
    for name in ("agent_id", "session_id", "kind"):
        if filters.get(name):
            queryset = queryset.filter(**{name: filters[name]})
    for tag in filters.get("tags") or []:
        queryset = queryset.filter(pk__in=MemoryTag.objects.filter(tag=tag).values("memory_id"))
    if filters.get("tags_any"):
        queryset = queryset.filter(pk__in=MemoryTag.objects.filter(
            tag__in=filters["tags_any"]).values("memory_id"))
    if filters.get("created_after"):
        queryset = queryset.filter(created_at__gte=filters["created_after"])
    if filters.get("created_before"):
        queryset = queryset.filter(created_at__lt=filters["created_before"])
    if filters.get("occurred_after") or filters.get("occurred_before"):
        queryset = queryset.alias(_event=Coalesce("occurred_at", "created_at"))
        if filters.get("occurred_after"):
            queryset = queryset.filter(_event__gte=filters["occurred_after"])
        if filters.get("occurred_before"):
            queryset = queryset.filter(_event__lt=filters["occurred_before"])
    for index, (key, value) in enumerate((filters.get("metadata") or {}).items()):
        alias = f"_meta_{index}"  # KeyTransform quotes the key: no lookup injection via "__"
        queryset = queryset.alias(**{alias: KeyTransform(key, "metadata")}).filter(**{alias: value})
    return queryset


def _note_recalled(memories: Sequence[Memory]) -> None:
    recall_stats.note_recalled(m.pk for m in memories)
    now = timezone.now()
    for memory in memories:  # what the caller sees matches what will be stored
        memory.access_count += 1
        memory.last_recalled_at = now


# --- edit ----------------------------------------------------------------------------

@metrics.observed("update")
def update(principal: Principal, memory_id: Any, data: Mapping[str, Any], *,
           partial: bool = True, reverted_to: int | None = None) -> Memory:
    """Edit a memory (team admin) and record a version of what changed.

    Only ``content`` is embedded: an edit that leaves it alone (tags, kind, metadata…)
    updates the vector index's filter fields and keeps the stored vector (a ``metadata``
    outbox op), without running the model. ``reverted_to`` (set by ``revert``) is noted
    in the audit entry.
    """
    memory = _editable(principal, memory_id)
    cleaned = schemas.validate(schemas.MemoryUpdate, data, partial=partial)
    if not partial:  # PUT replaces every editable field; omitted ones take defaults
        cleaned = {name: cleaned.get(name) for name in EDITABLE_FIELDS}
    embedded_text = cleaned.get("content", memory.content)
    embeddings = (indexing.embed_contents([embedded_text])
                  if embedded_text != memory.content else None)
    with transaction.atomic():
        memory = (Memory.objects.select_for_update(of=("self",)).select_related("namespace")
                  .get(pk=memory.pk))
        valid_from = cleaned.get("valid_from", memory.valid_from)
        valid_until = cleaned.get("valid_until", memory.valid_until)
        if valid_from and valid_until and valid_until <= valid_from:
            raise InvalidInput("must be after valid_from.", field="valid_until")
        changes = {
            name: {"before": _jsonable(getattr(memory, name)), "after": _jsonable(value)}
            for name, value in cleaned.items()
            if getattr(memory, name) != value
        }
        if not changes:
            return memory
        for name, value in cleaned.items():
            setattr(memory, name, value)
        if "content" in changes:
            memory.content_hash = content_hash(memory.content)
            # The dedup slot is ingest's (services._store): an edit gives up the old
            # words' slot rather than keep their hash, and claims none (edits may repeat).
            memory.dedup_slot = None
        memory.version += 1
        memory.updated_at = timezone.now()
        memory.save()
        if "content" in changes:
            lexical.replace(memory.namespace_id, [memory.pk])
        if "tags" in changes:
            MemoryTag.objects.filter(memory=memory).delete()
            MemoryTag.objects.bulk_create(
                [MemoryTag(memory=memory, namespace_id=memory.namespace_id, tag=t) for t in memory.tags]
            )
        MemoryVersion.objects.create(memory=memory, version=memory.version,
                                     changed_by=principal.label, changes=changes)
        summary = {"fields": sorted(changes), "version": memory.version}
        if reverted_to is not None:
            summary["reverted_to"] = reverted_to
        audit(principal, "memory.update", namespace=memory.namespace, record_ids=[memory.pk],
              summary=summary)
        row = IndexOutbox.objects.create(
            namespace_id=memory.namespace_id, memory_id=memory.pk,
            op=IndexOutbox.Op.UPSERT if "content" in changes else IndexOutbox.Op.METADATA)
    if "content" not in changes:
        embeddings = indexing.index_metadata_inline(memory.namespace, [memory], [row.pk])
    else:
        if memory.content != embedded_text:  # a concurrent edit changed it meanwhile
            embeddings = None
        indexing.index_inline(memory.namespace, [memory], embeddings, [row.pk])
    live.memories_changed("updated", memory.namespace, [memory], embeddings, principal)
    return memory


#: Fields a batched edit may change: none of them is embedded (``content`` is).
BATCH_EDITABLE = frozenset(EDITABLE_FIELDS) - {"content"}
#: Memories per transaction of a batched edit (bounds how long SQLite's write lock is held).
BATCH_EDIT_CHUNK = 500


@dataclass
class BatchEdit:
    """What a batched edit did: the memories changed, and (id, reason) for each refused."""

    updated: list[Memory] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


@metrics.observed("update")
def retag_many(principal: Principal, memory_ids: Sequence[Any], *, add: Sequence[str] = (),
               remove: Sequence[str] = ()) -> BatchEdit:
    """Add and remove tags on many memories in one batch (the dashboard's bulk re-tag)."""
    dropped = set(remove)

    def change(memory: Memory) -> dict[str, Any] | None:
        tags = [t for t in memory.tags if t not in dropped]
        tags += [t for t in add if t not in tags]
        return {"tags": tags} if tags != memory.tags else None

    return edit_many(principal, memory_ids, change)


@metrics.observed("update")
def set_kind_many(principal: Principal, memory_ids: Sequence[Any], kind: str) -> BatchEdit:
    """Give many memories one kind in one batch (the dashboard's bulk change of kind)."""
    return edit_many(principal, memory_ids, lambda m: {"kind": kind} if m.kind != kind else None)


def edit_many(principal: Principal, memory_ids: Sequence[Any],
              change: Callable[[Memory], Mapping[str, Any] | None]) -> BatchEdit:
    """Apply ``change(memory)`` (the fields to set, or None to leave it) to many memories.

    Why not ``update`` in a loop: each call embedded and indexed one memory, so re-tagging
    223 memories took 17.7 s. Here no field is embedded (BATCH_EDITABLE), so nothing runs
    the model, and SQL and the index are written per chunk. Each changed memory still
    gets its version row, its ``memory.update`` audit entry, a ``metadata`` outbox row
    (crash-safe: a failed index write is replayed by the drain) and its live event.
    A memory the caller may not edit, or whose new values are invalid, is refused alone
    (listed in ``errors``) and the others go ahead, as the one-by-one loop did.
    """
    result = BatchEdit()
    pks: list[uuid.UUID] = []
    for memory_id in memory_ids:
        try:
            pks.append(_pk(memory_id))
        except NotFound as exc:
            result.errors.append((str(memory_id), exc.message))
    pks = list(dict.fromkeys(pks))
    visible = set(Memory.objects.for_principal(principal).filter(pk__in=pks)
                  .values_list("pk", flat=True))
    result.errors += [(str(pk), "memory not found.") for pk in pks if pk not in visible]
    pks = [pk for pk in pks if pk in visible]
    for start in range(0, len(pks), BATCH_EDIT_CHUNK):
        _edit_chunk(principal, pks[start:start + BATCH_EDIT_CHUNK], change, result)
    return result


def _edit_chunk(principal: Principal, pks: Sequence[uuid.UUID],
                change: Callable[[Memory], Mapping[str, Any] | None], result: BatchEdit) -> None:
    refused: dict[int, str] = {}
    edited: list[tuple[Memory, dict[str, Any]]] = []
    with transaction.atomic():
        memories = list(Memory.objects.select_for_update(of=("self",)).select_related("namespace")
                        .filter(pk__in=list(pks)).order_by("pk"))
        for memory in memories:
            if memory.namespace_id not in refused:
                try:
                    authorize(principal, memory.namespace_id, Action.EDIT)
                    check_writable(memory.namespace)
                except ServiceError as exc:
                    refused[memory.namespace_id] = exc.message
            if memory.namespace_id in refused:
                result.errors.append((str(memory.pk), refused[memory.namespace_id]))
                continue
            data = change(memory)
            if not data:
                continue
            if set(data) - BATCH_EDITABLE:
                raise ValueError(f"edit_many cannot change {sorted(set(data) - BATCH_EDITABLE)}")
            try:
                cleaned = schemas.validate(schemas.MemoryUpdate, data, partial=True)
            except ServiceError as exc:
                result.errors.append((str(memory.pk), exc.message))
                continue
            valid_from = cleaned.get("valid_from", memory.valid_from)
            valid_until = cleaned.get("valid_until", memory.valid_until)
            if valid_from and valid_until and valid_until <= valid_from:
                result.errors.append((str(memory.pk), "valid_until must be after valid_from."))
                continue
            changes = {name: {"before": _jsonable(getattr(memory, name)), "after": _jsonable(value)}
                       for name, value in cleaned.items() if getattr(memory, name) != value}
            if not changes:
                continue
            for name, value in cleaned.items():
                setattr(memory, name, value)
            memory.version += 1
            memory.updated_at = timezone.now()
            edited.append((memory, changes))
        if not edited:
            return
        fields = sorted({name for _, changes in edited for name in changes})
        Memory.objects.bulk_update([m for m, _ in edited], [*fields, "version", "updated_at"])
        retagged = [m for m, changes in edited if "tags" in changes]
        if retagged:
            MemoryTag.objects.filter(memory__in=retagged).delete()
            MemoryTag.objects.bulk_create([MemoryTag(memory=m, namespace_id=m.namespace_id, tag=t)
                                           for m in retagged for t in m.tags])
        MemoryVersion.objects.bulk_create([
            MemoryVersion(memory=m, version=m.version, changed_by=principal.label, changes=changes)
            for m, changes in edited])
        for memory, changes in edited:
            audit(principal, "memory.update", namespace=memory.namespace, record_ids=[memory.pk],
                  summary={"fields": sorted(changes), "version": memory.version})
        rows = IndexOutbox.objects.bulk_create([
            IndexOutbox(namespace_id=m.namespace_id, memory_id=m.pk, op=IndexOutbox.Op.METADATA)
            for m, _ in edited])
    by_namespace: dict[int, list[tuple[Memory, IndexOutbox]]] = {}
    for (memory, _), row in zip(edited, rows, strict=True):
        by_namespace.setdefault(memory.namespace_id, []).append((memory, row))
    for pairs in by_namespace.values():
        memories = [m for m, _ in pairs]
        vectors = indexing.index_metadata_inline(memories[0].namespace, memories,
                                                 [r.pk for _, r in pairs])
        live.memories_changed("updated", memories[0].namespace, memories, vectors, principal)
        result.updated += memories


def state_at(memory: Memory, version: int) -> dict[str, Any]:
    """The editable fields as they were at ``version`` (1 = as stored), rebuilt by undoing
    each later edit's changes, newest first. Values are JSON forms (dates as ISO text)."""
    if not 1 <= version <= memory.version:
        raise InvalidInput(f"version must be between 1 and {memory.version}.", field="version")
    state = {name: _jsonable(getattr(memory, name)) for name in EDITABLE_FIELDS}
    for edit in memory.versions.filter(version__gt=version).order_by("-version"):
        for name, change in edit.changes.items():
            if name in state:
                state[name] = change["before"]
    return state


@metrics.observed("revert")
def revert(principal: Principal, memory_id: Any, version: int) -> Memory:
    """Make a memory's editable fields what they were at ``version`` (team admin).

    A revert is a new edit, not a rewind: it records a new version (with ``reverted_to``
    in its audit entry), re-indexes and is evented like any update, so history is kept.
    """
    memory = _editable(principal, memory_id)
    target = state_at(memory, version)
    current = {name: _jsonable(getattr(memory, name)) for name in EDITABLE_FIELDS}
    changed = {name: value for name, value in target.items() if current[name] != value}
    if not changed:
        return memory
    return update(principal, memory.pk, changed, reverted_to=version)


def keyword_matches(principal: Principal, text: str, limit: int = 1000, *,
                    namespace_ids: Sequence[int] | None = None, match: str = "any",
                    candidates: QuerySet[Memory] | None = None) -> list[uuid.UUID]:
    """Memories matching ``text`` in the keyword index of every namespace the principal
    may read (its own, never shared ones), or of those of ``namespace_ids`` it may read;
    ``candidates`` (a Memory queryset: the list's filters) narrows the match itself.

    For people searching a list (the dashboard), not for recall (whose keyword stage is
    an OR of words tuned for recall: lexical.build_query). ``match`` "all": every word;
    "any": any of them; either way "quoted phrases" and punctuated tokens (e-mail
    addresses, URLs, ids) match exactly as written (lexical.parse_lookup). BM25 scores
    are per namespace and do not compare, so the result is grouped by namespace (in slug
    order), each namespace's best first; at most ``limit``.
    """
    query = lexical.parse_lookup(text, match_all=match == "all")
    if not query.terms:
        return []
    readable = Namespace.objects.order_by("slug")
    if not principal.is_system_admin:
        readable = readable.filter(pk__in=principal.namespace_ids(Action.READ))
    if namespace_ids is not None:
        readable = readable.filter(pk__in=list(namespace_ids))
    found: list[uuid.UUID] = []
    for ns_id in readable.values_list("pk", flat=True):
        found.extend(pk for pk, _ in lexical.lookup(ns_id, query, limit - len(found), candidates))
        if len(found) >= limit:
            break
    return found


def _jsonable(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


@metrics.observed("delete")
def delete(principal: Principal, memory_id: Any) -> None:
    """Delete one memory (team admin) from SQL, its versions, and the vector index."""
    memory = _editable(principal, memory_id)
    _delete_memories(principal, {memory.namespace_id: [memory.pk]}, "memory.delete")


@metrics.observed("delete")
def delete_many(principal: Principal, memory_ids: Sequence[Any]) -> int:
    """Delete several memories in one transaction: all of them, or none if any is missing
    or in a namespace where the principal may not edit."""
    try:
        pks = {uuid.UUID(str(i)) for i in memory_ids}
    except ValueError:
        raise NotFound("memory not found.") from None
    by_namespace: dict[int, list[uuid.UUID]] = {}
    for ns_id, pk in Memory.objects.for_principal(principal).filter(pk__in=pks).values_list(
            "namespace_id", "pk"):
        by_namespace.setdefault(ns_id, []).append(pk)
    if sum(map(len, by_namespace.values())) != len(pks):
        raise NotFound("memory not found.")
    for ns_id, namespace in Namespace.objects.in_bulk(list(by_namespace)).items():
        authorize(principal, ns_id, Action.EDIT)
        check_writable(namespace)  # as delete(): an archived namespace is read-only
    return _delete_memories(principal, by_namespace, "memory.delete")


@metrics.observed("delete_by_agent")
def delete_by_agent(principal: Principal, agent_id: str, namespace: str | None = None, *,
                    all_namespaces: bool = False, limit: int | None = None) -> dict[str, int]:
    """Delete every memory stored by ``agent_id`` (system admin) in ``namespace``, or in
    every namespace when ``all_namespaces`` says so explicitly; the count per namespace.
    ``limit``: at most this many this call (the dashboard's bulk job forgets in batches).

    An agent id is only unique within a tenant (two tenants may both have ``agent-1``), so
    deleting everywhere is never the default: a forgotten ``?namespace=`` must not wipe
    every tenant's agent of that name.
    """
    if not principal.is_system_admin:
        raise PermissionDenied("only a system admin may delete all memories of an agent.")
    longest = settings.MEMORYWEB_LIMITS["max_id_length"]
    if not agent_id or len(agent_id) > longest or "\x00" in agent_id:
        raise InvalidInput(f"agent_id must be 1-{longest} characters.", field="agent_id")
    if bool(namespace) == all_namespaces:
        raise InvalidInput(
            "name one namespace (?namespace=) or every namespace (all_namespaces=true), not both."
            if namespace else "name the namespace to delete from (?namespace=), or confirm "
            "every namespace with all_namespaces=true: an agent id is only unique within a "
            "tenant.", field="all_namespaces")
    queryset = Memory.objects.filter(agent_id=agent_id)
    counts: dict[int, int] = {}
    if namespace:
        ns = resolve_namespace(principal, namespace)
        queryset, counts[ns.pk] = queryset.filter(namespace=ns), 0
    by_namespace: dict[int, list] = {}
    for ns_id, pk in queryset.values_list("namespace_id", "pk")[:limit]:
        by_namespace.setdefault(ns_id, []).append(pk)
    _delete_memories(principal, by_namespace, "memory.delete_by_agent", {"agent_id": agent_id},
                     counts=counts)
    slugs = dict(Namespace.objects.filter(pk__in=list(counts)).values_list("pk", "slug"))
    return {slugs[ns_id]: counts[ns_id] for ns_id in sorted(counts, key=slugs.get)}


#: The recall filters that select memories to delete (as ``_filtered`` applies them).
_DELETE_FILTERS = {"agent_id", "session_id", "kind", "tags", "tags_any", "created_after",
                   "created_before", "occurred_after", "occurred_before", "metadata"}


@metrics.observed("delete_matching")
def delete_matching(principal: Principal, namespace: str | None, filters: Mapping[str, Any]) -> int:
    """Delete every memory of a namespace that matches ``filters`` (system admin, like
    delete_by_agent): the recall filters' meaning, at least one of them, and at most
    ``max_filter_delete`` memories (more is refused: narrow it or delete by ids)."""
    if not principal.is_system_admin:
        raise PermissionDenied("only a system admin may delete memories by filter.")
    cleaned = schemas.validate(schemas.RecallFilters, dict(filters), prefix="filters")
    cleaned.pop("include_invalid", None)
    other = sorted(set(cleaned) - _DELETE_FILTERS)
    if other:  # a recall-only filter (valid_at) would select nothing here, or everything
        raise InvalidInput(f"{other[0]} cannot select memories to delete.", field=f"filters.{other[0]}")
    if not any(cleaned.values()):
        raise InvalidInput("give at least one filter (or ids); deleting a whole namespace "
                           "is DELETE /api/v1/namespaces/{slug}.", field="filters")
    ns = resolve_namespace(principal, namespace)
    check_writable(ns)
    pks = list(_filtered(Memory.objects.filter(namespace=ns), cleaned).values_list("pk", flat=True)
               [: settings.MEMORYWEB_LIMITS["max_filter_delete"] + 1])
    if len(pks) > settings.MEMORYWEB_LIMITS["max_filter_delete"]:
        raise InvalidInput(f"the filter matches more than "
                           f"{settings.MEMORYWEB_LIMITS['max_filter_delete']} memories; narrow it "
                           "or delete by ids.", field="filters", code="too_many")
    if not pks:
        return 0
    described = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in cleaned.items()}
    return _delete_memories(principal, {ns.pk: pks}, "memory.delete_matching",
                            {"filters": described})


def _delete_memories(principal: Principal, by_namespace: Mapping[int, Sequence[Any]],
                     operation: str, summary: Mapping[str, Any] | None = None,
                     chunk: int = 500, counts: dict[int, int] | None = None) -> int:
    """Delete memories in one transaction (all or nothing, one audit entry per namespace),
    then unindex per namespace. ``counts`` (if given) gets each namespace's deletions."""
    outbox: dict[int, list[IndexOutbox]] = {}
    namespaces = Namespace.objects.in_bulk(list(by_namespace))
    deleted = 0
    with transaction.atomic():
        for ns_id, pks in by_namespace.items():
            removed = 0
            for start in range(0, len(pks), chunk):
                part = list(pks[start : start + chunk])
                removed += Memory.objects.filter(namespace_id=ns_id, pk__in=part).delete()[1].get(
                    Memory._meta.label, 0)
            lexical.remove(ns_id, pks)
            outbox[ns_id] = IndexOutbox.objects.bulk_create(
                [IndexOutbox(namespace_id=ns_id, memory_id=pk, op=IndexOutbox.Op.DELETE) for pk in pks]
            )
            audit(principal, operation, namespace=namespaces[ns_id], record_ids=pks,
                  summary={**(summary or {}), "count": removed})
            live.memories_deleted(namespaces[ns_id], pks, principal,
                                  erasure=operation == "memory.erase")
            deleted += removed
            if counts is not None:
                counts[ns_id] = removed
    for ns_id, rows in outbox.items():
        indexing.unindex_inline(namespaces[ns_id], [str(r.memory_id) for r in rows], [r.pk for r in rows])
    return deleted


@dataclass
class IngestAndRecallResult:
    memory: Memory
    hits: list[RecallHit]
    #: Why the recall half failed after the memory was stored (the write still stands).
    recall_error: ServiceError | None = None


@metrics.observed("ingest_and_recall")
def ingest_and_recall(principal: Principal, data: Mapping[str, Any],
                      namespace: str | None = None) -> IngestAndRecallResult:
    """Seed 000's combined call: store a memory, then recall what else relates to it.

    Everything is validated before the write. The stored memory is left out of the
    results. If the recall fails after the write (the vector index is down), the write
    is still acknowledged and the error is reported beside it, so a retry does not
    store the memory twice.
    """
    if not isinstance(data, Mapping):
        raise InvalidInput("expected a JSON object.")
    cleaned = schemas.validate(schemas.IngestAndRecallInput, data)
    recall_keys = ("query", "k", "mode", "explain", "filters", "min_score", "mmr_lambda", "rerank",
                   "pad_to_k", "include_shared")
    tuning = ("mode", "min_score", "mmr_lambda", "rerank", "pad_to_k")
    _recall_options(resolve_namespace(principal, data.get("namespace") or namespace),
                    {k: cleaned[k] for k in tuning if k in cleaned})  # before the write
    memory = ingest(principal, {k: v for k, v in data.items() if k not in recall_keys}, namespace)
    query = {k: data[k] for k in recall_keys if k in data}
    query.setdefault("query", memory.content[: settings.MEMORYWEB_LIMITS["max_query_bytes"] // 4])
    query["namespace"] = memory.namespace.slug
    try:
        hits = recall(principal, query, exclude_ids=[str(memory.pk)]).hits
    except Unavailable as exc:
        return IngestAndRecallResult(memory, [], exc)
    return IngestAndRecallResult(memory, hits)


def delete_namespace(principal: Principal, namespace: Namespace) -> int:
    """Delete a namespace with its memories, versions, keys, keyword table and Chroma collection."""
    if not principal.is_system_admin:
        raise PermissionDenied("only a system admin may delete a namespace.")
    # Derived data first: if the SQL delete then fails, a reindex rebuilds the vectors;
    # the other order could leave an orphan collection with nothing left to find it.
    get_vector_store().drop_collection(get_vector_store().collection_name(namespace))
    with transaction.atomic():
        count = Memory.objects.filter(namespace=namespace).count()
        audit(principal, "namespace.delete", namespace=namespace,
              summary={"memories": count, "keys": namespace.api_keys.count()})
        namespace.delete()  # its keyword table goes with it (apps.memories.signals)
    return count
