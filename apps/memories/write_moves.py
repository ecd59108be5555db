"""The write path's moves: memories re-homed in another namespace, in place (a namespace
merge, apps/lifecycle/namespace_merge.py, and its revert). Part of the write path: only
``Write.move`` and ``Write.cut_ties`` (apps/memories/writes.py) call in here, inside their
``writes.atomic()`` block.

A move must carry every store that holds a memory or something derived from it; a store
left behind would keep the moved text where no erasure of the target looks.
:data:`MOVE_HANDLING` says, for every registered store (apps/memories/stores.py), what a
move does with it; ``tests/lifecycle/test_namespace_merge.py`` fails when a registered
store is missing from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from django.db.models import Q
from django.utils import timezone

from apps.memories import changes, indexing, lexical, stores
from apps.memories.models import ExternalId, IndexOutbox, Memory, MemoryLink, MemoryTag, MemoryVersion
from apps.tenancy.models import Namespace

if TYPE_CHECKING:
    from apps.memories.writes import Write

#: Registered store -> what a move does with it (docs/lifecycle.md lists these).
MOVE_HANDLING: dict[str, str] = {
    "memories": "re-homed in place: id, content, times and statistics kept; version + 1",
    "content_hashes": "the dedup slot is given up where the target holds the same content",
    "versions": "follow their memory; a version row records the move (namespace before/after)",
    "tags": "their rows follow (namespace updated)",
    "external_ids": "follow, but seed 000's numbers (the target numbers its own) and ids the "
                    "target already uses: left behind, recorded for the revert",
    "memory_links": "follow (namespace updated); ties to memories staying behind are cut "
                    "first (a revert)",
    "keyword_index": "removed from the source's table, added to the target's",
    "context_keyword_rows": "re-derived with the keyword rows in the target",
    "vector_index": "the stored vectors are upserted in the target's collection (nothing "
                    "re-embedded) and deleted from the source's",
    "context_vectors": "moved with the vectors (stored, with their context)",
    "outbox": "delete rows for the source, upsert rows for the target, settled after the block",
    "idempotency_records": "the source's records naming the moved memories are erased",
    "admin_log": "kept: it names the memory id, which does not change",
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
         audit: Callable[[Sequence[Memory]], object]) -> dict[str, list[list[str]]]:
    """``Write.move``: ids, versions, lineage and audit references stay. The keyword rows
    move tables; tag rows and links follow; a version row records the move; the source's
    idempotency records naming them go; other systems' ids follow (see
    :func:`_move_external_ids`). A memory whose content the target holds live
    (``duplicates``: its id -> the target's memory) gives up its dedup slot and is
    superseded by that memory. Then ``audit(memories)`` and the live events (deleted in
    the source, created in the target). After the block: in the target's vector index with
    ``vectors`` (the stored ones; None embeds them) and out of the source's."""
    if not memories:
        return {}
    ids = [m.pk for m in memories]
    lexical.remove(source.pk, ids)
    held = set(Memory.objects.filter(namespace=target, dedup_slot__in=[
        m.dedup_slot for m in memories if m.dedup_slot]).values_list("dedup_slot", flat=True))
    now = timezone.now()
    versions = []
    for memory in memories:
        memory.namespace = target
        if memory.dedup_slot in held or str(memory.pk) in duplicates:
            memory.dedup_slot = None
        memory.version += 1
        memory.updated_at = now
        versions.append(MemoryVersion(
            memory=memory, version=memory.version, changed_by=actor.label,
            # Not "namespace" (a field: as_of would try to restore it from a slug).
            changes={"namespace_slug": {"before": source.slug, "after": target.slug}}))
    Memory.objects.bulk_update(memories, ["namespace", "dedup_slot", "version", "updated_at"])
    lexical.add(target.pk, ids)
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
        staying = list(Memory.objects.filter(namespace=namespace, superseded_by=by).exclude(
            pk__in=list(together)).values_list("pk", flat=True))
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
