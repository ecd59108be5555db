"""The write path's moves: memories re-homed in another namespace, in place (a namespace
merge, apps/lifecycle/namespace_merge.py, and its revert). Part of the write path: only
``Write.move`` and ``Write.cut_ties`` (apps/memories/writes.py) call in here, inside their
``writes.atomic()`` block.

A move must carry every store that holds a memory or something derived from it; a store
left behind would keep the moved text where no erasure of the target looks.
:data:`MOVE_HANDLING` says, for every registered store (apps/memories/stores.py), what a
move does with it; ``tests/lifecycle/test_namespace_merge.py`` fails when a registered
store is missing from it.

**Encrypted namespaces** (docs/encryption.md): a sealed value is bound to its row *and
namespace* (the associated data), and a namespace's keyed hashes and blind tokens are
under its own keys, so a move to or from an encrypted namespace **re-seals**: each
memory's content and metadata and every version's ``changes`` are opened under the
source (before the row changes namespace) and written back sealed for the target (in
clear for a plain one) in the same UPDATE that moves the row; ``content_hash``,
``dedup_slot`` and ``metadata_blind`` are recomputed under the target's keys, and the
keyword rows are added as the target's blind tokens. All of it in the caller's
transaction: a batch that fails leaves its rows sealed for the source, as they were.
Moving an encrypted namespace's memories into a plain one is refused unless the caller
says so (``into_clear``: a merge's revert, which puts memories back where they were).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from apps.core.errors import Conflict
from apps.memories import changes, indexing, lexical, plain_vectors, sealing, stores
from apps.memories.models import (
    ExternalId,
    IndexOutbox,
    Memory,
    MemoryLink,
    MemoryTag,
    MemoryVersion,
    content_hash,
)
from apps.tenancy.models import Namespace

if TYPE_CHECKING:
    from apps.memories.writes import Write

#: Registered store -> what a move does with it (docs/lifecycle.md lists these).
MOVE_HANDLING: dict[str, str] = {
    "memories": "re-homed in place: id, content, times and statistics kept; version + 1; "
                "to or from an encrypted namespace, content and metadata re-sealed for the "
                "target (metadata_blind recomputed under its key)",
    "content_hashes": "the dedup slot is given up where the target holds the same content; "
                      "to or from an encrypted namespace, hash and slot recomputed with the "
                      "target's (keyed) hash",
    "versions": "follow their memory; a version row records the move (namespace before/after); "
                "to or from an encrypted namespace, every version's changes re-sealed for "
                "the target",
    "tags": "their rows follow (namespace updated)",
    "external_ids": "follow, but seed 000's numbers (the target numbers its own) and ids the "
                    "target already uses: left behind, recorded for the revert",
    "plain_vectors": "follow their memory (keyed by its id), their content hash rewritten "
                     "to the memory's new one (the target's keyed hash where encrypted)",
    "memory_links": "follow (namespace updated); ties to memories staying behind are cut "
                    "first (a revert)",
    "merged_survivors": "follow their memory: an erasure's versions of a survivor, with "
                        "the digests of the tags it dropped (which name no namespace)",
    "keyword_index": "removed from the source's table, added to the target's (blind tokens "
                     "under the target's key where it is encrypted)",
    "context_keyword_rows": "re-derived with the keyword rows in the target, and those of the "
                            "target's memories whose context just arrived",
    "vector_index": "the stored vectors are upserted in the target's collection (nothing "
                    "re-embedded) and deleted from the source's",
    "context_vectors": "moved with the vectors (stored, with their context)",
    "outbox": "delete rows for the source, upsert rows for the target, settled after the block",
    "idempotency_records": "the source's records naming the moved memories are erased",
    "admin_log": "kept: it names the memory id, which does not change; moving into an "
                 "encrypted namespace, older rows' object_repr (a memory's first "
                 "characters) becomes the memory's id",
    "keyword_memory_index": "follows the keyword index through its change log",
    "keyword_change_log": "kept (ids only)",
    "vector_files": "the merge drops the source's collection with its files when it ends",
    "audit_log": "kept: entries name the memory id, which does not change",
    "bulk_jobs": "kept (ids only)",
    "rollups": "the merge drops the source's timeline before the first move; the target "
               "builds its own from the moved memories",
    "erasure_records": "kept (an erasure's record stays with the namespace it ran in)",
    "namespace_merges": "written by the merge itself: one record per moved memory",
    "forgetting_review": "the merge drops the source's review list at the start (the "
                         "target's next review finds the weak memories again)",
    "consolidation_runs": "kept with the source's runs (ids only; a run shows no text of a "
                          "memory no longer in its namespace)",
}


def move(write: Write, source: Namespace, target: Namespace, memories: Sequence[Memory],
         vectors: np.ndarray | None, *, duplicates: Mapping[str, Memory], actor: Any,
         audit: Callable[[Sequence[Memory]], object],
         into_clear: bool = False) -> dict[str, list[list[str]]]:
    """``Write.move``: ids, versions, lineage and audit references stay. The keyword rows
    move tables; tag rows and links follow; a version row records the move; the source's
    idempotency records naming them go; other systems' ids follow (see
    :func:`_move_external_ids`). A memory whose content the target holds live
    (``duplicates``: its id -> the target's memory) gives up its dedup slot and is
    superseded by that memory. Then ``audit(memories)`` and the live events (deleted in
    the source, created in the target). After the block: in the target's vector index with
    ``vectors`` (the stored ones; None embeds them) and out of the source's.

    To or from an encrypted namespace the memories are re-sealed for the target (the
    module's docstring); from an encrypted into a plain one only with ``into_clear``."""
    if not memories:
        return {}
    sealed_from = sealing.namespace_encrypted(source.pk, source)
    sealed_to = sealing.namespace_encrypted(target.pk, target)
    if sealed_from and not sealed_to and not into_clear:
        raise Conflict(f"namespace {target.slug!r} is not encrypted: moving {source.slug!r}'s "
                       "memories there would store them in clear.", field="target")
    reseal = sealed_from or sealed_to
    versions_held = _open_for_move(source, memories) if reseal else []
    ids = [m.pk for m in memories]
    lexical.remove(source.pk, ids)
    if reseal:  # the target's hash of the same text (keyed under its key where encrypted)
        for memory in memories:
            digest = content_hash(memory.content, target)
            kept = memory.dedup_slot is not None and memory.dedup_slot == memory.content_hash
            memory.content_hash, memory.dedup_slot = digest, digest if kept else None
    held = set(Memory.objects.filter(namespace=target, dedup_slot__in=[
        m.dedup_slot for m in memories if m.dedup_slot]).values_list("dedup_slot", flat=True))
    now = timezone.now()
    versions = []
    # Slots taken by this batch: a source midway through encrypt_namespace can hold the
    # same text twice (a plain and a keyed hash), which are one hash in the target.
    claimed: set[str] = set()
    for memory in memories:
        memory.namespace = target  # metadata_blind follows in bulk_update (its pre_save)
        if memory.dedup_slot in held or memory.dedup_slot in claimed or str(memory.pk) in duplicates:
            memory.dedup_slot = None
        if memory.dedup_slot:
            claimed.add(memory.dedup_slot)
        memory.version += 1
        memory.updated_at = now
        versions.append(MemoryVersion(
            memory=memory, version=memory.version, changed_by=actor.label,
            # Not "namespace" (a field: as_of would try to restore it from a slug).
            changes={"namespace_slug": {"before": source.slug, "after": target.slug}}))
    fields = ["namespace", "dedup_slot", "version", "updated_at"]
    if reseal:  # opened above; sealed for the target (metadata_blind follows metadata)
        fields += [*sealing.sealed_fields(Memory), "content_hash"]
    Memory.objects.bulk_update(memories, fields)
    plain_vectors.rehash(ids)  # the target's (keyed) hash of the same content
    MemoryVersion.objects.bulk_update(versions_held, ["changes"])
    if sealed_from and not sealed_to and connection.vendor == "postgresql":
        _clear_blind_search(ids)
    lexical.add(target.pk, ids)
    if reseal:
        _reindex_arrived_context(target, ids)
    if sealed_to:
        _scrub_admin_log(ids)
    MemoryTag.objects.filter(memory_id__in=ids).update(namespace=target)
    MemoryLink.objects.filter(Q(source_id__in=ids) | Q(target_id__in=ids)).update(namespace=target)
    MemoryVersion.objects.bulk_create(versions)
    dropped = _move_external_ids(target, ids)
    idempotency = stores.get("idempotency_records")
    if idempotency is not None and idempotency.erase is not None:
        idempotency.erase(source, ids)
    for memory in memories:
        existing = duplicates.get(str(memory.pk))
        if existing is not None:
            write.supersede(target, [memory], existing, similarity={memory.pk: 1.0}, actor=actor)
    gone = IndexOutbox.objects.bulk_create(
        [IndexOutbox(namespace=source, memory_id=pk, op=IndexOutbox.Op.DELETE) for pk in ids])
    arrived = IndexOutbox.objects.bulk_create(
        [IndexOutbox(namespace=target, memory_id=pk, op=IndexOutbox.Op.UPSERT) for pk in ids])
    audit(memories)
    changes.memories_deleted(source, ids, actor)
    changes.memories_changed("created", target, memories, vectors, actor)
    moved = list(memories)

    def index() -> None:
        indexing.index_inline(target, moved, vectors, [r.pk for r in arrived])
        indexing.unindex_inline(source, [str(pk) for pk in ids], [r.pk for r in gone])

    write._queue(index)
    return dropped


def _open_for_move(source: Namespace, memories: Sequence[Memory]) -> list[MemoryVersion]:
    """Open every sealed value of these memories (locked by the caller) and of all their
    versions while the rows still name ``source``: what ``bulk_update`` then writes is
    the plaintext sealed afresh for the row's new namespace, never a ciphertext bound to
    the old one (MemoryQuerySet.bulk_update refuses a move that carries one). Returns the
    versions, locked, their ``changes`` opened and bound to their memory (the instance
    the caller moves, so they are sealed for its new namespace too)."""
    names = [Memory._meta.get_field(n).attname for n in sealing.sealed_fields(Memory)]
    for memory in memories:
        if memory.namespace_id != source.pk:
            raise Conflict(f"memory {memory.pk} is not in {source.slug!r}.", field="namespace")
        memory._state.fields_cache["namespace"] = source
        for name in names:
            getattr(memory, name)  # opened under the source's key and associated data
    by_pk = {m.pk: m for m in memories}
    versions = list(MemoryVersion.objects.select_for_update().filter(
        memory_id__in=list(by_pk)).order_by("pk").only("id", "memory_id", "version", "changes"))
    for version in versions:
        version._state.fields_cache["memory"] = by_pk[version.memory_id]
        version.changes  # noqa: B018 -- opened now, sealed for the new namespace on write
    return versions


def _reindex_arrived_context(target: Namespace, ids: Sequence[Any]) -> None:
    """The target's memories whose conversation context is among the arrivals: their
    keyword rows read that context's text while it was still sealed for (or in) the other
    namespace; re-derived now that it reads in the target."""
    dependents = list(Memory.objects.in_namespace_checked(target).filter(context_memory_id__in=ids)
                      .exclude(pk__in=ids).order_by().values_list("pk", flat=True))
    if dependents:
        lexical.replace(target.pk, dependents)


def _clear_blind_search(ids: Sequence[Any]) -> None:
    """PostgreSQL: memories leaving an encrypted namespace for a plain one drop their
    blind tokens (a plain namespace searches the generated ``search`` column)."""
    with connection.cursor() as cursor:
        for start in range(0, len(ids), 500):
            part = [str(pk) for pk in ids[start:start + 500]]
            cursor.execute("UPDATE memories_memory SET blind_search = NULL WHERE id = ANY(%s::uuid[])",
                           [part])


def _scrub_admin_log(ids: Sequence[Any]) -> None:
    """Older admin-log rows kept a memory's first characters (``object_repr``; the admin
    no longer writes them for memories): in an encrypted namespace they name it by id."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    rows = LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(Memory))
    for start in range(0, len(ids), 500):
        rows.filter(object_id__in=[str(pk) for pk in ids[start:start + 500]]).update(
            object_repr=F("object_id"))


def cut_ties(write: Write, namespace: Namespace, ids: Sequence[Any], together: set[str]) -> int:
    """``Write.cut_ties``: lineage between ``ids`` and memories of ``namespace`` that are
    not in ``together`` is undone (lineage never crosses namespaces)."""
    ids = [str(pk) for pk in ids]
    cut = 0
    # Leaving memories superseded by one that stays: current again.
    outside = Memory.objects.filter(pk__in=ids, superseded_by__isnull=False).exclude(
        superseded_by__in=list(together)).values_list("superseded_by", flat=True).distinct()
    for by in Memory.objects.filter(pk__in=list(outside)):
        cut += len(write.release(namespace, by, only=ids))
    # Staying memories superseded by one that leaves: current again.
    for by in Memory.objects.filter(pk__in=ids):
        staying = list(Memory.objects.in_namespace_checked(namespace).filter(superseded_by=by)
                       .exclude(pk__in=list(together)).order_by().values_list("pk", flat=True))
        if staying:
            cut += len(write.release(namespace, by, only=staying))
    crossing = MemoryLink.objects.filter(
        Q(source_id__in=ids) & ~Q(target_id__in=list(together))
        | Q(target_id__in=ids) & ~Q(source_id__in=list(together)))
    cut += crossing.delete()[0]
    return cut


def _move_external_ids(target: Namespace, ids: Sequence[Any]) -> dict[str, list[list[str]]]:
    """Other systems' ids of moved memories into ``target``, but seed 000's numbers (the
    target numbers its own) and ids the target already uses: those are deleted, and
    returned (memory id -> ``[[system, id], ...]``) for the record of the move."""
    rows = list(ExternalId.objects.filter(memory_id__in=ids))
    taken = set(ExternalId.objects.filter(namespace=target).filter(
        external_id__in=[r.external_id for r in rows]).values_list("system", "external_id"))
    dropped: dict[str, list[list[str]]] = {}
    leaving = []
    for row in rows:
        if row.system == ExternalId.System.CMM or (row.system, row.external_id) in taken:
            dropped.setdefault(str(row.memory_id), []).append([row.system, row.external_id])
            leaving.append(row.pk)
    ExternalId.objects.filter(pk__in=leaving).delete()
    ExternalId.objects.filter(memory_id__in=ids).update(namespace=target)
    return dropped
