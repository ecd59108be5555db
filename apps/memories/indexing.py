"""Keeping Chroma in step with SQL: inline indexing, the outbox drain, full reindex.

SQL is the truth. Every write puts an outbox row in its own transaction; after the
commit the write is indexed inline (read-your-writes) and its rows are removed. If
Chroma is unavailable the rows stay, the write is still acknowledged, and a later
drain replays them: after the next successful inline index, every few seconds in
each web process (``start_background_drain``), or ``manage.py drain_outbox``.

Those automatic drains leave alone a row that no inline index has failed yet and that is
younger than :data:`IN_FLIGHT_SECONDS`: its write committed a moment ago and is indexing
it now. Replaying it too embedded the write's memories a second time (4 % of a server's
samples during a batch ingest, measured 2026-12-08, and every concurrent writer's rows
again for each write that settled). The command replays every row.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from apps.core.background import run_every
from apps.memories import context, plain_vectors
from apps.memories.embeddings import get_embedder
from apps.memories.models import IndexOutbox, Memory
from apps.memories.vectorstore import chroma_metadata, get_vector_store
from apps.ops import metrics
from apps.tenancy.models import Namespace

log = logging.getLogger(__name__)

#: Outbox rows replayed automatically after a successful inline index...
AUTO_DRAIN_LIMIT = 256
#: ...skipping rows that already failed this often (left to the background drain and
#: the command, so a poison row does not cost every write a retry).
AUTO_DRAIN_MAX_ATTEMPTS = 3
#: An outbox row never attempted and younger than this belongs to a write that is still
#: indexing it inline (embedding is done before the commit: what is left after it, the
#: Chroma upsert of at most a batch, takes well under a second). Automatic drains leave
#: it to that write; a write whose process died is replayed once its rows are this old.
IN_FLIGHT_SECONDS = 10.0


def backlog(rows: QuerySet | None = None) -> QuerySet:
    """Outbox rows no write is indexing right now: attempted and failed already, or
    older than :data:`IN_FLIGHT_SECONDS` (what the automatic drains replay)."""
    rows = IndexOutbox.objects.all() if rows is None else rows
    young = timezone.now() - dt.timedelta(seconds=IN_FLIGHT_SECONDS)
    return rows.filter(Q(attempts__gt=0) | Q(created_at__lt=young))


def embed_contents(contents: Sequence[str]) -> np.ndarray | None:
    """Embed before the transaction so SQL never waits on the model; None if it fails."""
    return _or_outbox(lambda: get_embedder().embed(list(contents)))


def embed_memories(memories: Sequence[Memory]) -> np.ndarray | None:
    """The memories' index vectors (:func:`context.index_vectors`: with their
    conversation context), embedded before the transaction; None if it fails."""
    return _or_outbox(lambda: context.index_vectors(memories))


def _or_outbox(embed: Callable[[], np.ndarray]) -> np.ndarray | None:
    try:
        return embed()
    except Exception:
        log.exception("embedding failed; the write will be indexed from the outbox")
        return None


def _upsert(namespace: Namespace, memories: Sequence[Memory], vectors: np.ndarray | None = None,
            *, fresh: bool = False) -> None:
    """Memories' vectors (embedded now unless given) and filter fields into the collection.

    ``fresh``: ids never indexed before (just stored), so no stored metadata to clear.
    """
    if not memories:
        return
    if vectors is None:
        vectors = context.index_vectors(memories)
    get_vector_store().upsert(namespace, [str(m.pk) for m in memories], vectors,
                              [chroma_metadata(m) for m in memories], fresh=fresh)
    plain_vectors.save(memories)  # the contents embedded alone on the way, if any


def refresh(namespace: Namespace, memories: Sequence[Memory]) -> None:
    """Re-embed and re-index memories from their rows now (raises if the index fails):
    erasure's repeat of a conversation-context re-index (apps/memories/stores.py)."""
    _upsert(_current(namespace), memories)


def _update_metadata(namespace: Namespace, memories: Sequence[Memory]) -> np.ndarray:
    """Memories' filter fields into the collection, keeping their stored vectors (an edit
    that left ``content`` alone: with the context's, apps/memories/context.py, the only
    embedded text). A memory the collection lacks
    (its first index never happened, or was lost) is embedded and indexed in full.
    Returns the vectors, one row per memory (for the live event)."""
    store = get_vector_store()
    ids = [str(m.pk) for m in memories]
    vectors = store.update_metadata(namespace, ids, [chroma_metadata(m) for m in memories])
    missing = [m for m in memories if str(m.pk) not in vectors]
    if missing:
        embedded = context.index_vectors(missing)
        store.upsert(namespace, [str(m.pk) for m in missing], embedded,
                     [chroma_metadata(m) for m in missing])
        vectors.update(zip((str(m.pk) for m in missing), embedded, strict=True))
    return np.stack([vectors[i] for i in ids]) if ids else np.zeros((0, 0), dtype=np.float32)


def _current(namespace: Namespace) -> Namespace:
    """The namespace as it is now: a reindex may have swapped its collection meanwhile."""
    return Namespace.objects.only("id", "slug", "collection", "reindex_started_at").get(pk=namespace.pk)


def index_inline(
    namespace: Namespace,
    memories: Sequence[Memory],
    embeddings: np.ndarray | None,
    outbox_ids: Sequence[int],
    *,
    fresh: bool = False,
) -> bool:
    """Upsert just-committed memories into Chroma; never raises (``fresh``: new ids).

    Returns True when indexed. On failure the outbox rows stay for a later drain.
    """
    try:
        target = _current(namespace)
        _upsert(target, memories, embeddings, fresh=fresh)
    except Exception as exc:
        metrics.INDEX_ERRORS.labels("upsert").inc()
        _record_failure(outbox_ids, exc)
        return False
    _settle(target, outbox_ids)
    return True


def index_metadata_inline(namespace: Namespace, memories: Sequence[Memory],
                          outbox_ids: Sequence[int]) -> np.ndarray | None:
    """Write just-committed filter fields (tags, kind, metadata) without embedding; never
    raises. Returns the memories' stored vectors, or None when the index failed (the
    outbox's ``metadata`` rows stay for a later drain, which also re-uses the vectors)."""
    try:
        target = _current(namespace)
        vectors = _update_metadata(target, memories)
    except Exception as exc:
        metrics.INDEX_ERRORS.labels("metadata").inc()
        _record_failure(outbox_ids, exc)
        return None
    _settle(target, outbox_ids)
    return vectors


def unindex_inline(namespace: Namespace, memory_ids: Sequence[str], outbox_ids: Sequence[int]) -> bool:
    """Remove just-deleted memories from Chroma; never raises."""
    try:
        target = _current(namespace)
        get_vector_store().delete(target, list(memory_ids))
    except Exception as exc:
        metrics.INDEX_ERRORS.labels("delete").inc()
        _record_failure(outbox_ids, exc)
        return False
    _settle(target, outbox_ids)
    return True


def _settle(namespace: Namespace, outbox_ids: Sequence[int]) -> None:
    """Done: drop our outbox rows (unless a rebuild will replay them), then help the backlog."""
    if namespace.reindex_started_at is None:
        IndexOutbox.objects.filter(pk__in=list(outbox_ids)).delete()
    if backlog().filter(attempts__lt=AUTO_DRAIN_MAX_ATTEMPTS).exists():
        drain_outbox(limit=AUTO_DRAIN_LIMIT, max_attempts=AUTO_DRAIN_MAX_ATTEMPTS,
                     in_flight_too=False)


def _record_failure(outbox_ids: Iterable[int], exc: Exception) -> None:
    ids = list(outbox_ids)
    log.warning("vector index write failed, %d outbox rows kept: %s", len(ids), exc)
    IndexOutbox.objects.filter(pk__in=ids).update(
        attempts=F("attempts") + 1, last_error=f"{type(exc).__name__}: {exc}"[:1000]
    )


@dataclass
class DrainReport:
    processed: int = 0
    failed: int = 0
    remaining: int = 0


def drain_outbox(limit: int | None = None, batch_size: int = 256, *,
                 namespace: Namespace | None = None, max_attempts: int | None = None,
                 progress: Callable[[int], None] | None = None,
                 in_flight_too: bool = True) -> DrainReport:
    """Replay pending outbox rows in order; idempotent, so concurrent drainers only repeat work.
    ``in_flight_too`` False (the automatic drains): only the :func:`backlog`.

    A namespace whose batch fails is retried row by row, so one bad row cannot hold up
    the others; a namespace where every row fails (its index is down) is skipped for the
    rest of this run. Namespaces being rebuilt are left to the rebuild unless named.
    """
    report = DrainReport()
    pending = IndexOutbox.objects.order_by("id")
    if namespace is not None:
        pending = pending.filter(namespace=namespace)
    else:
        pending = pending.filter(namespace__reindex_started_at__isnull=True)
    if max_attempts is not None:
        pending = pending.filter(attempts__lt=max_attempts)
    if not in_flight_too:
        pending = backlog(pending)
    down: set[int] = set()
    last_id = 0
    while limit is None or report.processed + report.failed < limit:
        size = batch_size if limit is None else min(batch_size, limit - report.processed - report.failed)
        rows = list(pending.filter(id__gt=last_id).exclude(namespace_id__in=down)[:size])
        if not rows:
            break
        last_id = rows[-1].pk
        by_namespace: dict[int, list[IndexOutbox]] = defaultdict(list)
        for row in rows:
            by_namespace[row.namespace_id].append(row)
        namespaces = Namespace.objects.in_bulk(list(by_namespace))
        for namespace_id, ns_rows in by_namespace.items():
            done, failed = _replay_isolated(namespaces[namespace_id], ns_rows)
            report.processed += done
            report.failed += failed
            if failed and not done:
                down.add(namespace_id)
            if progress:
                progress(len(ns_rows))
    report.remaining = IndexOutbox.objects.count()
    return report


def _replay_isolated(namespace: Namespace, rows: Sequence[IndexOutbox]) -> tuple[int, int]:
    try:
        _replay(namespace, rows)
    except Exception as exc:
        if len(rows) == 1:
            metrics.INDEX_ERRORS.labels("drain").inc()
            _record_failure([rows[0].pk], exc)
            return 0, 1
        done = failed = 0
        for row in rows:
            row_done, row_failed = _replay_isolated(namespace, [row])
            done, failed = done + row_done, failed + row_failed
        return done, failed
    IndexOutbox.objects.filter(pk__in=[r.pk for r in rows]).delete()
    return len(rows), 0


def _replay(namespace: Namespace, rows: Sequence[IndexOutbox]) -> None:
    ids = list(dict.fromkeys(str(r.memory_id) for r in rows))
    # The current SQL state decides: present (in this namespace: a namespace merge moves
    # memories out) means upsert, absent means delete. A memory whose pending rows are all
    # ``metadata`` (no content change) keeps its stored vector.
    embed = {str(r.memory_id) for r in rows if r.op != IndexOutbox.Op.METADATA}
    memories = list(Memory.objects.in_namespace_checked(namespace).filter(pk__in=ids))
    present = {str(m.pk) for m in memories}
    store = get_vector_store()
    store.delete(namespace, [i for i in ids if i not in present])
    if memories:
        _upsert(namespace, [m for m in memories if str(m.pk) in embed])
        _update_metadata(namespace, [m for m in memories if str(m.pk) not in embed])
        # A delete that committed while we embedded has already unindexed and dropped its
        # outbox row: take back what we just re-added for it.
        still = {str(pk) for pk in Memory.objects.in_namespace_checked(namespace).filter(
            pk__in=list(present)).values_list("pk", flat=True)}
        store.delete(namespace, [i for i in present if i not in still])


def reindex_namespace(namespace: Namespace, batch_size: int = 256,
                      progress: Callable[[int], None] | None = None) -> int:
    """Rebuild a namespace's collection from SQL into a fresh one, then swap.

    Recall keeps using the old collection until the swap. While the rebuild runs,
    writes keep their outbox rows (``reindex_started_at`` is set); after the swap those
    rows are replayed into the new collection, so no write is lost.
    """
    store = get_vector_store()
    Namespace.objects.filter(pk=namespace.pk).update(reindex_started_at=timezone.now())
    old_name = store.collection_name(namespace)
    building = Namespace(pk=namespace.pk, slug=namespace.slug)  # a fresh collection name
    total = 0
    try:
        queryset = Memory.objects.filter(namespace=namespace).order_by("pk")
        last_pk = None
        while True:
            page = queryset.filter(pk__gt=last_pk) if last_pk else queryset
            memories = list(page[:batch_size])
            if not memories:
                break
            _upsert(building, memories)
            total += len(memories)
            last_pk = memories[-1].pk
            if progress:
                progress(len(memories))
    except BaseException:
        Namespace.objects.filter(pk=namespace.pk).update(reindex_started_at=None)
        store.drop_collection(store.collection_name(building))
        raise
    Namespace.objects.filter(pk=namespace.pk).update(collection=building.collection)
    namespace.collection = building.collection
    store.forget_cached(namespace)
    drain_outbox(namespace=namespace)  # writes made during the rebuild
    Namespace.objects.filter(pk=namespace.pk).update(reindex_started_at=None)
    drain_outbox(namespace=namespace)  # writes that saw the flag just before it was cleared
    store.drop_collection(old_name)
    return total


_drainer: threading.Thread | None = None


def start_background_drain(interval: float) -> None:
    """Drain the outbox every ``interval`` seconds in this process (the web server)."""
    global _drainer
    if interval > 0 and _drainer is None:
        _drainer = run_every(interval, _drain_backlog, "outbox-drain")


def _drain_backlog() -> None:
    if backlog().exists():
        drain_outbox(limit=1000, in_flight_too=False)
