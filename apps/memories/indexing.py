"""Keeping Chroma in step with SQL: inline indexing, the outbox drain, full reindex.

SQL is the truth. Every write puts an outbox row in its own transaction; after the
commit the write is indexed inline (read-your-writes) and its rows are removed. If
Chroma is unavailable the rows stay, the write is still acknowledged, and the next
successful inline index (or ``manage.py drain_outbox``) replays them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from django.db.models import F
from django.utils import timezone

from apps.memories.embeddings import get_embedder
from apps.memories.models import IndexOutbox, Memory
from apps.memories.vectorstore import chroma_metadata, get_vector_store
from apps.tenancy.models import Namespace

log = logging.getLogger(__name__)

#: Outbox rows replayed automatically after a successful inline index.
AUTO_DRAIN_LIMIT = 256


def embed_contents(contents: Sequence[str]) -> np.ndarray | None:
    """Embed before the transaction so SQL never waits on the model; None if it fails."""
    try:
        return get_embedder().embed(list(contents))
    except Exception:
        log.exception("embedding failed; the write will be indexed from the outbox")
        return None


def index_inline(
    namespace: Namespace,
    memories: Sequence[Memory],
    embeddings: np.ndarray | None,
    outbox_ids: Sequence[int],
) -> bool:
    """Upsert just-committed memories into Chroma; never raises.

    Returns True when indexed. On failure the outbox rows stay for a later drain.
    """
    try:
        if embeddings is None:
            embeddings = get_embedder().embed([m.content for m in memories])
        get_vector_store().upsert(
            namespace,
            [str(m.pk) for m in memories],
            embeddings,
            [chroma_metadata(m) for m in memories],
        )
    except Exception as exc:
        _record_failure(outbox_ids, exc)
        return False
    IndexOutbox.objects.filter(pk__in=list(outbox_ids)).delete()
    _auto_drain()
    return True


def unindex_inline(namespace: Namespace, memory_ids: Sequence[str], outbox_ids: Sequence[int]) -> bool:
    """Remove just-deleted memories from Chroma; never raises."""
    try:
        get_vector_store().delete(namespace, list(memory_ids))
    except Exception as exc:
        _record_failure(outbox_ids, exc)
        return False
    IndexOutbox.objects.filter(pk__in=list(outbox_ids)).delete()
    _auto_drain()
    return True


def _record_failure(outbox_ids: Iterable[int], exc: Exception) -> None:
    log.warning("vector index unavailable, %d outbox rows kept: %s", len(list(outbox_ids)), exc)
    IndexOutbox.objects.filter(pk__in=list(outbox_ids)).update(
        attempts=F("attempts") + 1, last_error=f"{type(exc).__name__}: {exc}"[:1000]
    )


def _auto_drain() -> None:
    """Chroma just worked: replay a bounded slice of any backlog left by earlier failures."""
    if IndexOutbox.objects.exists():
        drain_outbox(limit=AUTO_DRAIN_LIMIT)


@dataclass
class DrainReport:
    processed: int = 0
    failed: int = 0
    remaining: int = 0


def drain_outbox(limit: int | None = None, batch_size: int = 256,
                 progress: Callable[[int], None] | None = None) -> DrainReport:
    """Replay pending outbox rows in order; stop at the first namespace that fails.

    Replays are idempotent (upsert the memory's current SQL state, or delete), so a
    crash mid-way or two drainers at once only repeat work.
    """
    report = DrainReport()
    while limit is None or report.processed < limit:
        size = batch_size if limit is None else min(batch_size, limit - report.processed)
        rows = list(IndexOutbox.objects.order_by("id")[:size])
        if not rows:
            break
        by_namespace: dict[int, list[IndexOutbox]] = defaultdict(list)
        for row in rows:
            by_namespace[row.namespace_id].append(row)
        namespaces = Namespace.objects.in_bulk(list(by_namespace))
        stop = False
        for namespace_id, ns_rows in by_namespace.items():
            try:
                _replay(namespaces[namespace_id], ns_rows)
            except Exception as exc:
                _record_failure([r.pk for r in ns_rows], exc)
                report.failed += len(ns_rows)
                stop = True
                break
            IndexOutbox.objects.filter(pk__in=[r.pk for r in ns_rows]).delete()
            report.processed += len(ns_rows)
            if progress:
                progress(len(ns_rows))
        if stop:
            break
    report.remaining = IndexOutbox.objects.count()
    return report


def _replay(namespace: Namespace, rows: Sequence[IndexOutbox]) -> None:
    ids = list(dict.fromkeys(str(r.memory_id) for r in rows))
    # The current SQL state decides: present means upsert, absent means delete.
    memories = list(Memory.objects.filter(pk__in=ids))
    present = {str(m.pk) for m in memories}
    store = get_vector_store()
    store.delete(namespace, [i for i in ids if i not in present])
    if memories:
        vectors = get_embedder().embed([m.content for m in memories])
        store.upsert(namespace, [str(m.pk) for m in memories], vectors,
                     [chroma_metadata(m) for m in memories])


def reindex_namespace(namespace: Namespace, batch_size: int = 256,
                      progress: Callable[[int], None] | None = None) -> int:
    """Rebuild a namespace's collection from SQL into a fresh one, then swap.

    Recall keeps using the old collection until the swap. Writes that land during the
    rebuild are caught up afterwards (memories updated since the start are upserted,
    ids no longer in SQL removed), and the old collection is dropped.
    """
    store = get_vector_store()
    started = timezone.now()
    old_name = store.collection_name(namespace)
    building = Namespace(pk=namespace.pk, slug=namespace.slug)  # collection gets a new name
    total = 0
    queryset = Memory.objects.filter(namespace=namespace).order_by("pk")
    last_pk = None
    while True:
        page = queryset.filter(pk__gt=last_pk) if last_pk else queryset
        memories = list(page[:batch_size])
        if not memories:
            break
        vectors = get_embedder().embed([m.content for m in memories])
        store.upsert(building, [str(m.pk) for m in memories], vectors,
                     [chroma_metadata(m) for m in memories])
        total += len(memories)
        last_pk = memories[-1].pk
        if progress:
            progress(len(memories))
    Namespace.objects.filter(pk=namespace.pk).update(collection=building.collection)
    namespace.collection = building.collection
    store.forget_cached(namespace)
    # Catch up with writes that happened while building.
    recent = list(Memory.objects.filter(namespace=namespace, updated_at__gte=started))
    if recent:
        store.upsert(namespace, [str(m.pk) for m in recent],
                     get_embedder().embed([m.content for m in recent]),
                     [chroma_metadata(m) for m in recent])
    in_sql = {str(pk) for pk in Memory.objects.filter(namespace=namespace).values_list("pk", flat=True)}
    stale = list(store.all_ids(namespace) - in_sql)
    for start in range(0, len(stale), 1000):
        store.delete(namespace, stale[start : start + 1000])
    store.drop_collection(old_name)
    IndexOutbox.objects.filter(namespace=namespace, created_at__lt=started).delete()
    return total
