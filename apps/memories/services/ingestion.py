"""Storing memories (``ingest``, ``ingest_many``): validation, the Idempotency-Key claim
and replay, exact and near-duplicate detection, and the one transaction in which the write
path (apps/memories/writes.py) stores what is new before the memories are indexed."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError

from apps.audit.log import record as audit
from apps.core.errors import Conflict, InvalidInput, Unavailable
from apps.core.validation import validate_each
from apps.memories import context, indexing, schemas, sealing, writes
from apps.memories.models import IdempotencyRecord, Memory, MemoryKind, content_hash
from apps.memories.results import StoredMemory
from apps.memories.services.building import batch_namespace, ingest_namespace, new_memories
from apps.memories.vectorstore import get_vector_store
from apps.ops import metrics
from apps.tenancy.models import Namespace, NearDuplicatePolicy
from apps.tenancy.principal import Principal

log = logging.getLogger(__name__)


@metrics.observed("ingest")
def ingest(principal: Principal, data: Mapping[str, Any], namespace: str | None = None, *,
           idempotency_key: str | None = None) -> StoredMemory:
    """Store one memory for ``principal`` (agent role or above).

    Identical content already live in the namespace is not stored twice: that memory is
    returned, and the result says ``duplicate``. With an ``idempotency_key`` a retry of the same
    request returns what the first one stored.
    """
    if not isinstance(data, Mapping):
        raise InvalidInput("expected a JSON object.")
    ns = ingest_namespace(principal, data.get("namespace") or namespace)
    cleaned = schemas.validate(schemas.MemoryInput, data)
    _check_same_namespace(ns, cleaned, "namespace")
    _check_not_event(cleaned, "kind")
    return _store_once(principal, ns, [cleaned], idempotency_key, data)[0]


@metrics.observed("ingest")
def ingest_many(principal: Principal, items: Sequence[Mapping[str, Any]],
                namespace: str | None = None, *, idempotency_key: str | None = None,
                ) -> list[StoredMemory]:
    """Store up to ``max_batch`` memories in one namespace, all or nothing (dedup as ingest)."""
    ns = batch_namespace(principal, items, namespace, "memories")
    cleaned = []
    # validate everything before writing anything
    for i, data in enumerate(validate_each(schemas.MemoryInput, items, prefix="memories[{}]")):
        _check_same_namespace(ns, data, f"memories[{i}].namespace")
        _check_not_event(data, f"memories[{i}].kind")
        cleaned.append(data)
    return _store_once(principal, ns, cleaned, idempotency_key, list(items))


def _check_same_namespace(ns: Namespace, data: dict[str, Any], field: str) -> None:
    other = data.pop("namespace", None)
    if other and other != ns.slug:
        raise InvalidInput(f"namespace {other!r} differs from the request's namespace {ns.slug!r}.",
                           field=field)


def _check_not_event(data: dict[str, Any], field: str) -> None:
    """Events come only through ``POST /api/v1/events`` (services/events.py): there they
    are idempotent by their client id and append-only; stored here they would be neither."""
    if data.get("kind") == MemoryKind.EVENT:
        raise InvalidInput("kind 'event' is for conversation events: store them with "
                           "POST /api/v1/events.", field=field)


class _KeyTaken(Exception):
    """Another request recorded this Idempotency-Key first: raised inside the store's
    transaction so everything it wrote so far rolls back."""


def _store_once(principal: Principal, ns: Namespace, cleaned: list[dict[str, Any]],
                idempotency_key: str | None, raw: Any) -> list[StoredMemory]:
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
    # Keyed in an encrypted namespace: the body holds the memory's text (docs/encryption.md).
    request_hash = sealing.keyed_hash(
        json.dumps(raw, sort_keys=True, default=str, separators=(",", ":")), ns, "idempotency")
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


def _replay(record: IdempotencyRecord, request_hash: str) -> list[StoredMemory]:
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
        replayed.append(StoredMemory(memory, duplicate=True))
    return replayed


def _store(principal: Principal, ns: Namespace, cleaned: list[dict[str, Any]],
           claim: IdempotencyRecord | None = None) -> list[StoredMemory]:
    """Write validated memories in one transaction through the write path
    (apps/memories/writes.py: rows, tag rows, keyword index, outbox), then index.

    Content identical (after whitespace normalisation) to a live memory of the
    namespace, or to an earlier item of the same batch, is not written again: the
    existing memory takes its place in the result (``duplicate``). Near-duplicates
    (by embedding) are then linked, skipped or kept per the namespace's policy.

    Concurrent identical ingests: each new memory claims its content's ``dedup_slot``
    (unique per namespace), so only one insert succeeds; the others find the winner's
    memory and return it as a duplicate, writing nothing for it (no row, audit entry,
    outbox row, vector or live event). ``claim``: an Idempotency-Key record, inserted
    first in the same transaction (raises ``_KeyTaken`` if another request holds it).
    """
    hashes = [content_hash(d["content"], ns) for d in cleaned]
    existing = _live_by_hash(ns, hashes)
    unique: dict[str, dict[str, Any]] = {}  # content hash -> the first item with it, if new
    for data, digest in zip(cleaned, hashes, strict=True):
        if digest not in existing and digest not in unique:
            unique[digest] = data
    fresh: dict[str, Memory] = dict(zip(unique, new_memories(
        principal, ns, list(unique.values()), hashes=list(unique)), strict=True))
    memories = list(fresh.values())
    embeddings = None
    near = _NearDuplicates()
    if memories:
        context.assign(ns.pk, memories)  # the turn before, indexed with each (context.py)
        embeddings = indexing.embed_memories(memories)
        near = _near_duplicates(ns, memories, embeddings)
        skipped = near.skipped
        if skipped:  # skip policy: the near-duplicate stands in for the new memory
            keep = [i for i, m in enumerate(memories) if m.pk not in skipped]
            for digest, memory in fresh.items():
                if memory.pk in skipped:
                    existing[digest] = skipped[memory.pk]
            memories = [memories[i] for i in keep]
            embeddings = embeddings[keep] if embeddings is not None else None
            context.remap(memories, skipped)
    if not memories and claim is None:
        return _answer(hashes, existing, fresh, near)  # nothing to write: no transaction

    def entry(stored: list[Memory]) -> None:
        audit(principal, "memory.create", namespace=ns, record_ids=[m.pk for m in stored],
              summary={"count": len(stored), "requested": len(cleaned),
                       "near_duplicates_linked": sum(m.near_duplicate_of_id is not None
                                                     for m in stored)})

    with writes.atomic() as write:  # the write path (apps/memories/writes.py) indexes on leaving
        if claim is not None:
            try:
                claim.save(force_insert=True)
            except IntegrityError:  # leaves the block: the whole transaction rolls back
                raise _KeyTaken from None
        if memories:
            write.create(ns, memories, embeddings, actor=principal, audit=entry,
                         on_taken=_taken_by_others(ns, existing))
        result = _answer(hashes, existing, fresh, near)
        if claim is not None:
            claim.memory_ids = [str(r.memory.pk) for r in result]
            claim.save(update_fields=["memory_ids"])
    return result


def _live_by_hash(ns: Namespace, hashes: Sequence[str]) -> dict[str, Memory]:
    """The namespace's live memory for each content hash that has one (the oldest).

    Conversation events are left out: a turn that says what a memory says is a record of
    the conversation, not that memory (and an event, append-only for agents, must not
    stand in for what an agent stores)."""
    found: dict[str, Memory] = {}
    # Sorted here, not in SQL: an ORDER BY created_at (or the model's default ordering)
    # makes SQLite's planner, which has no statistics, walk the namespace's created_at
    # index, every memory of it, for each batch instead of seeking the hashes
    # (memory_ns_hash); batch ingest then slowed as the namespace grew.
    rows = (Memory.objects.live().select_related("namespace")
            .filter(namespace=ns, content_hash__in=set(hashes), event_type="").order_by())
    for memory in sorted(rows, key=lambda m: (m.created_at, str(m.pk)), reverse=True):
        found[memory.content_hash] = memory  # oldest wins
    return _speaking_for(found)


#: How many merges deep a superseded memory's survivor is looked for.
MAX_SUPERSEDED_HOPS = 8


def _speaking_for(found: dict[Any, Memory]) -> dict[Any, Memory]:
    """Each memory, or where consolidation superseded it, the live memory that says it now
    (its survivor, followed through later merges): a repeat of a merged memory's text is
    answered with the memory recall serves, not one left out of it."""
    pending = {digest: m.superseded_by_id for digest, m in found.items() if m.superseded_by_id}
    for _ in range(MAX_SUPERSEDED_HOPS):
        if not pending:
            break
        rows = Memory.objects.live().select_related("namespace").in_bulk(set(pending.values()))
        for digest, survivor_id in list(pending.items()):
            survivor = rows.get(survivor_id)
            if survivor is None:  # expired or gone: the member itself stays the answer
                del pending[digest]
                continue
            found[digest] = survivor
            if survivor.superseded_by_id:
                pending[digest] = survivor.superseded_by_id
            else:
                del pending[digest]
    return found


def _taken_by_others(ns: Namespace, existing: dict[str, Memory]) -> writes.OnTaken:
    """The write path's ``on_taken`` for a store: after a dedup-slot conflict, read the
    memories a concurrent ingest stored first (the winners) and leave ours out for them
    (``_drop_taken``: the winners go into ``existing``, and so into the answer)."""
    def settle(memories: list[Memory], embeddings: np.ndarray | None
               ) -> tuple[list[Memory], np.ndarray | None]:
        winners = _live_by_hash(ns, [m.content_hash for m in memories])
        if not winners:
            return memories, embeddings
        return _drop_taken(memories, embeddings, winners, existing)
    return settle


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
    context.remap(kept, replaced)
    for digest, stand_in in list(existing.items()):
        if stand_in.pk in replaced:  # a skip-policy stand-in for a memory never stored
            existing[digest] = replaced[stand_in.pk]  # its similarity stays (_answer)
    existing.update(winners)
    return kept, (embeddings[keep] if embeddings is not None else None)


@dataclass(frozen=True)
class _NearDuplicates:
    """What the near-duplicate check found, by the new memories' ids."""

    #: Skip policy: a new memory's id -> the memory that stands in for it (not stored).
    skipped: dict[uuid.UUID, Memory] = field(default_factory=dict)
    #: A new memory's id -> cosine similarity to its near-duplicate (linked or standing in).
    similarity: dict[uuid.UUID, float] = field(default_factory=dict)


def _answer(hashes: Sequence[str], existing: Mapping[str, Memory], fresh: Mapping[str, Memory],
            near: _NearDuplicates) -> list[StoredMemory]:
    """One result per requested item, in order: the memory stored now, or the one that
    already was (``duplicate``, as is a repeat of the same content within the batch),
    with the similarity of the near-duplicate found for it (linked, or standing in under
    the skip policy; identical content, or a concurrent ingest's winner, has none)."""
    result = []
    returned: set[str] = set()
    for digest in hashes:
        new = fresh.get(digest)
        if digest in existing:
            stood_in = new is not None and new.pk in near.skipped
            result.append(StoredMemory(existing[digest], duplicate=True,
                                       near_duplicate_similarity=near.similarity.get(new.pk)
                                       if stood_in else None))
        else:  # stored now; a repeat within the batch is its duplicate
            result.append(StoredMemory(new, duplicate=digest in returned,
                                       near_duplicate_similarity=near.similarity.get(new.pk)))
        returned.add(digest)
    return result


def _near_duplicates(ns: Namespace, memories: Sequence[Memory],
                     embeddings: np.ndarray | None) -> _NearDuplicates:
    """Find each new memory's closest match (stored, or earlier in the batch) and apply
    the namespace's policy: ``link`` sets ``near_duplicate_of``, ``skip`` maps the new
    memory's id to the match that replaces it, ``keep`` does nothing. Either way the
    match's similarity is kept by the new memory's id, for the answer.

    Best effort: without embeddings or with the vector index down, nothing is linked
    (the write itself must not fail for it).
    """
    if ns.near_duplicate_policy == NearDuplicatePolicy.KEEP or embeddings is None:
        return _NearDuplicates()
    threshold = ns.near_duplicate_threshold or settings.MEMORYWEB_NEAR_DUPLICATE_THRESHOLD
    try:
        stored = get_vector_store().nearest(ns, embeddings, threshold)
    except Exception as exc:  # the index is down: store without linking
        log.warning("near-duplicate check skipped: %s", exc)
        stored = [None] * len(memories)
    stored_ids = {uuid.UUID(hit.id) for hit in stored if hit and hit.similarity >= threshold}
    # Not an event nor a summary (vectorstore.nearest); read by primary key, the namespace
    # checked on the rows (in_namespace_checked: SQLite would walk the namespace).
    targets = (Memory.objects.live().in_namespace_checked(ns).filter(event_type="")
               .exclude(kind=MemoryKind.SUMMARY).order_by().in_bulk(stored_ids)
               if stored_ids else {})
    # A match that consolidation merged into another: the memory that says it now.
    targets = _speaking_for(targets)
    within = embeddings @ embeddings.T  # unit vectors: cosine similarity
    found = _NearDuplicates()
    skipped = found.skipped
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
        found.similarity[memory.pk] = min(similarity, 1.0)
        if ns.near_duplicate_policy == NearDuplicatePolicy.SKIP:
            skipped[memory.pk] = best
        else:
            memory.near_duplicate_of = best
    return found
