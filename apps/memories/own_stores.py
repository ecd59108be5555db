"""Memories' own stores in the registry (apps/memories/stores.py), and the audit log's.

The SQL rows, the indexes (keyword, vectors, context), the outbox, idempotency records,
the admin log, and the kept records (audit log, bulk jobs): declared here, registered by
``MemoriesConfig.ready`` through :func:`register_memory_stores`. The registry's types and
helpers stay in stores.py, which apps above memories import to register their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection, models, transaction

from apps.memories import chroma_files
from apps.memories.stores import (
    Erased,
    ErasedBy,
    Progress,
    Store,
    chunks,
    count_in,
    exempt,
    register,
    rows_count,
    rows_remaining,
)
from apps.tenancy.models import Namespace


def _memories_remaining(namespace: Namespace | None, erased: Erased) -> int:
    from apps.memories.models import Memory

    return count_in(Memory.objects.all(), "pk", erased.ids)  # asked even once the namespace is gone


def _content_hashes_remaining(namespace: Namespace | None, erased: Erased) -> int | None:
    from apps.memories.models import Memory

    if namespace is None:
        return None
    others = Memory.objects.filter(namespace=namespace).exclude(pk__in=list(erased.retained))
    return count_in(others, "content_hash", sorted(set(erased.hashes)))


def _keyword_count(namespace: Namespace, ids: Sequence[Any] | None = None) -> int | None:
    from apps.memories import lexical, small_keywords

    if ids is not None:
        return lexical.held(namespace.pk, ids)
    if connection.vendor != "sqlite":
        return None  # PostgreSQL indexes a column of the memory row: always in step
    if small_keywords.is_small(namespace.pk):
        return None  # no table: ranked in memory from the rows (keyword_memory_index)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {lexical.fts_table(namespace.pk)}")
        return cursor.fetchone()[0]


def _keyword_remaining(namespace: Namespace | None, erased: Erased) -> int | None:
    from apps.memories import lexical

    return None if namespace is None else lexical.held(namespace.pk, erased.ids)


def _keyword_erase(namespace: Namespace, ids: Sequence[Any]) -> None:
    """The delete path removed the rows; merging the segments takes the words out of the
    index files too (costs time proportional to the namespace: erasure only)."""
    from apps.memories import lexical

    lexical.compact(namespace.pk)


def _keyword_rebuild(namespace: Namespace, progress: Progress) -> int | None:
    from apps.memories import lexical

    if connection.vendor != "sqlite" and not namespace.encrypted:  # blind_search is written
        return None  # a generated column of the memory row: nothing to rebuild
    with transaction.atomic():  # recall never sees a half-built keyword table
        rows = lexical.rebuild(namespace.pk)
    progress(rows)
    return rows


def _keyword_orphans() -> list[str]:
    from apps.memories import lexical

    return [f"the keyword table of deleted namespace {pk}" for pk in lexical.drop_orphans()]


def _vector_count(namespace: Namespace, ids: Sequence[Any] | None = None) -> int:
    from apps.memories.vectorstore import get_vector_store

    store = get_vector_store()
    if ids is None:
        return store.count(namespace)
    return sum(len(store.embeddings(namespace, [str(i) for i in part])) for part in chunks(ids))


def _vector_remaining(namespace: Namespace | None, erased: Erased) -> int | None:
    return None if namespace is None else _vector_count(namespace, erased.ids)


def _vector_erase(namespace: Namespace, ids: Sequence[Any]) -> None:
    from apps.memories.vectorstore import get_vector_store

    for part in chunks([str(i) for i in ids]):
        get_vector_store().delete(namespace, part)


def _vector_rebuild(namespace: Namespace, progress: Progress) -> int:
    from apps.memories.indexing import reindex_namespace

    return reindex_namespace(namespace, progress=progress)


def _context_rows_count(namespace: Namespace, ids: Sequence[Any] | None = None) -> int:
    """Memories indexed with a conversation context (of these ids, when given)."""
    from apps.memories.models import Memory

    linked = Memory.objects.filter(namespace=namespace)
    if ids is None:
        return linked.filter(context_memory__isnull=False).count()
    return count_in(linked, "context_memory_id", [str(i) for i in ids])


def _context_rows_remaining(namespace: Namespace | None, erased: Erased) -> int | None:
    """Links to an erased memory, and keyword rows still holding its words as context."""
    from apps.memories import lexical
    from apps.memories.models import Memory

    linked = count_in(Memory.objects.all(), "context_memory_id", list(erased.ids))
    if namespace is None:
        return linked
    return linked + lexical.held_as_context(namespace.pk, erased.ids)


def _context_vectors_count(namespace: Namespace, ids: Sequence[Any] | None = None) -> int | None:
    from apps.memories.vectorstore import get_vector_store

    if ids is None:
        return None  # not countable without reading every vector's metadata
    return sum(len(get_vector_store().context_holders(namespace, part))
               for part in chunks([str(i) for i in ids]))


def _context_vectors_remaining(namespace: Namespace | None, erased: Erased) -> int | None:
    return None if namespace is None else _context_vectors_count(namespace, erased.ids)


def _context_vectors_erase(namespace: Namespace, ids: Sequence[Any]) -> None:
    """Re-embed, from SQL as it is now, the memories whose vectors still hold an erased
    memory's words as context: the delete path queued it; this repeats it for a retried
    erasure, or one whose inline indexing failed."""
    from apps.memories.indexing import refresh
    from apps.memories.models import Memory
    from apps.memories.vectorstore import get_vector_store

    for part in chunks([str(i) for i in ids]):
        holders = get_vector_store().context_holders(namespace, part)
        if holders:
            refresh(namespace, list(Memory.objects.in_namespace_checked(namespace).filter(
                pk__in=holders)))


def _outbox_erase(namespace: Namespace, ids: Sequence[Any]) -> None:
    from apps.memories.models import IndexOutbox

    for part in chunks(ids):
        IndexOutbox.objects.filter(namespace=namespace, memory_id__in=part).delete()


def idempotency_naming(namespace: Namespace, ids: Iterable[Any]) -> list[int]:
    """The namespace's idempotency records that name any of these memory ids."""
    from apps.memories.models import IdempotencyRecord

    wanted = {str(i) for i in ids}
    return [pk for pk, memory_ids in IdempotencyRecord.objects.filter(namespace=namespace)
            .values_list("pk", "memory_ids") if wanted & set(memory_ids)]


def _idempotency_count(namespace: Namespace, ids: Sequence[Any] | None = None) -> int:
    from apps.memories.models import IdempotencyRecord

    if ids is None:
        return IdempotencyRecord.objects.filter(namespace=namespace).count()
    return len(idempotency_naming(namespace, ids))


def _idempotency_remaining(namespace: Namespace | None, erased: Erased) -> int | None:
    return None if namespace is None else len(idempotency_naming(namespace, erased.ids))


def _idempotency_erase(namespace: Namespace, ids: Sequence[Any]) -> None:
    from apps.memories.models import IdempotencyRecord

    IdempotencyRecord.objects.filter(pk__in=idempotency_naming(namespace, ids)).delete()


def _admin_log() -> models.QuerySet:
    """The admin log's rows about memories (any memory: filter by ``object_id``)."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    from apps.memories.models import Memory

    return LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(Memory))


def _admin_log_count(namespace: Namespace, ids: Sequence[Any] | None = None) -> int | None:
    if ids is None:
        return None  # its rows name a memory by text, not by namespace
    return count_in(_admin_log(), "object_id", [str(i) for i in ids])


def _admin_log_remaining(namespace: Namespace | None, erased: Erased) -> int:
    # Asked even once the namespace is gone: a namespace's deletion leaves these rows.
    return count_in(_admin_log(), "object_id", list(erased.ids))


def _admin_log_erase(namespace: Namespace, ids: Sequence[Any]) -> None:
    for part in chunks([str(i) for i in ids]):
        _admin_log().filter(object_id__in=part).delete()


def memory_stores() -> tuple[Store, ...]:
    """The stores memories declares: its own, and the audit log's (audit sits below
    memories and cannot import this registry). In the order certificates list them."""
    return (*_row_stores(), *_index_stores(), *_kept_stores())


def _row_stores() -> tuple[Store, ...]:
    """SQL rows that hold a memory's content or name it."""
    from apps.memories import lineage_store, plain_vectors
    from apps.memories.models import ExternalId, Memory, MemoryTag, MemoryVersion, PlainVector

    return (
        Store("memories", "memory rows",
              "memories_memory: content, kind, tags, metadata, agent and session ids, "
              "timestamps, recall statistics (access_count, last_recalled_at). Checked by id "
              "even after the namespace is deleted.",
              ErasedBy.DELETE_PATH, models=(Memory,), count=rows_count(Memory, "namespace", "pk"),
              remaining=_memories_remaining, certificate_count="memories"),
        Store("content_hashes", "the namespace's memories, by content hash",
              "The same rows asked by content SHA-256: identical text stored again after the "
              "erasure (outside the retained memories) fails the certificate.",
              ErasedBy.DELETE_PATH, remaining=_content_hashes_remaining),
        Store("versions", "version history",
              "memories_memoryversion: each edit's fields before and after (old content).",
              ErasedBy.CASCADE, models=(MemoryVersion,),
              count=rows_count(MemoryVersion, "memory__namespace", "memory_id"),
              remaining=rows_remaining(MemoryVersion, "memory_id"), certificate_count="versions"),
        Store("tags", "tags", "memories_memorytag: one row per (memory, tag), the tag filter's index.",
              ErasedBy.CASCADE, models=(MemoryTag,),
              count=rows_count(MemoryTag, "namespace", "memory_id"),
              remaining=rows_remaining(MemoryTag, "memory_id"), certificate_count="tags"),
        Store("external_ids", "other systems' ids",
              "memories_externalid: an importer's or a drop-in route's id for a memory.",
              ErasedBy.CASCADE, models=(ExternalId,),
              count=rows_count(ExternalId, "namespace", "memory_id"),
              remaining=rows_remaining(ExternalId, "memory_id")),
        Store("plain_vectors", "content vectors",
              "memories_plainvector: a session memory's content embedded alone (what the "
              "next turn's vector mixes in and consolidation compares), a cache of the "
              "model's output, never text.",
              ErasedBy.CASCADE, models=(PlainVector,),
              count=rows_count(PlainVector, "memory__namespace", "memory_id"),
              remaining=rows_remaining(PlainVector, "memory_id"),
              rebuild=lambda namespace, progress: plain_vectors.drop_stale(namespace.pk)),
        *lineage_store.stores(),
    )


def _index_stores() -> tuple[Store, ...]:
    """Indexes derived from the rows, pending index work, and records that name memories."""
    from django.contrib.admin.models import LogEntry

    from apps.memories.models import IdempotencyRecord, IndexOutbox

    return (
        Store("keyword_index", "keyword (full-text) index",
              "memories_fts_<namespace> on SQLite (a tsvector column of the row on "
              "PostgreSQL): the content's words. The delete path removes the rows; erasure "
              "then merges the index so the words leave its files too.",
              ErasedBy.DELETE_PATH, count=_keyword_count, remaining=_keyword_remaining,
              erase=_keyword_erase, mirrors_memories=True, rebuild=_keyword_rebuild,
              drop_orphans=_keyword_orphans, certificate_count="keyword_rows"),
        Store("vector_index", "vector index",
              "Chroma, a collection per namespace (embedded: a small namespace's in the small "
              "index, small_index.sqlite3): the embedding and the filter fields "
              "(agent, session, kind, tags, metadata values). Deleted by id inline and from "
              "the outbox; erasure deletes again after the commit and retries until it holds.",
              ErasedBy.DELETE_PATH, count=_vector_count, remaining=_vector_remaining,
              erase=_vector_erase, after_commit=True, external=True, mirrors_memories=True,
              rebuild=_vector_rebuild),
        Store("context_keyword_rows", "conversation context in keyword rows",
              "The memory stored after another in its session is indexed with that one's "
              "first 1,000 characters as its conversation context (apps/memories/context.py): "
              "a column of its keyword row (context_search on PostgreSQL) and the link "
              "context_memory. The delete path unlinks and re-indexes those memories.",
              ErasedBy.DELETE_PATH, count=_context_rows_count, remaining=_context_rows_remaining),
        Store("context_vectors", "conversation context in vectors",
              "The vector of the memory stored after another in its session embeds that "
              "one's words too (Chroma metadata context_id names it). The delete path "
              "re-embeds those memories; erasure re-embeds any still naming an erased memory "
              "after the commit, and retries until none does.",
              ErasedBy.DELETE_PATH, count=_context_vectors_count, remaining=_context_vectors_remaining,
              erase=_context_vectors_erase, after_commit=True, external=True),
        Store("outbox", "index outbox",
              "memories_indexoutbox: pending vector-index work (ids only); erasure settles "
              "the delete rows once the vectors are gone.",
              ErasedBy.DELETE_PATH, models=(IndexOutbox,),
              count=rows_count(IndexOutbox, "namespace", "memory_id"),
              remaining=rows_remaining(IndexOutbox, "memory_id"), erase=_outbox_erase, after_commit=True),
        Store("idempotency_records", "idempotency records",
              "memories_idempotencyrecord: the ids a retried ingest is answered with. An "
              "ordinary delete keeps them (a retry still gets its answer); erasure removes "
              "the records that name an erased memory.",
              ErasedBy.ERASURE, models=(IdempotencyRecord,), count=_idempotency_count,
              remaining=_idempotency_remaining, erase=_idempotency_erase,
              certificate_count="idempotency_records"),
        Store("admin_log", "the admin's change log",
              "django_admin_log rows about a memory: object_repr held its first characters "
              "(the dashboard no longer writes them for memories; older rows remain until "
              "erased).",
              ErasedBy.ERASURE, models=(LogEntry,), count=_admin_log_count,
              remaining=_admin_log_remaining, erase=_admin_log_erase),
        *_keyword_memory_stores(),
        # Last: it rewrites the namespace's collection once every other vector write of the
        # erasure (vector_index, context_vectors, the outbox) is done.
        Store("vector_files", "the vector index's files on disk",
              "The embedded Chroma's files (CHROMA_PATH): a deleted vector stays in the HNSW "
              "segment files (marked deleted), in Chroma's log (embeddings_queue, with its filter "
              "fields) until the index persists, and in freed chroma.sqlite3 pages; a dropped "
              "collection leaves its segment directory. Erasure rewrites the namespace's "
              "collection from its live vectors and vacuums chroma.sqlite3, then checks that no "
              "log or metadata row names an erased id and no dropped collection's directory is "
              "left. The small index zeroes deleted rows (secure_delete); its log is emptied "
              "and its rows naming an erased id are counted too. With a Chroma server "
              "(CHROMA_URL) its files are out of reach: not checked.",
              ErasedBy.ERASURE, remaining=lambda namespace, erased: chroma_files.disk_residue(erased.ids),
              erase=chroma_files.compact_namespace, after_commit=True, external=True,
              drop_orphans=chroma_files.drop_orphan_segments),
    )


def _memory_indexes():
    """This process's in-memory keyword indexes (imported late: numpy and the engine load
    only when the store is used)."""
    from apps.memories import keyword_index_log

    return keyword_index_log.indexes()


def _memory_index_rebuild(namespace: Namespace, progress: Progress) -> int | None:
    """Every process rebuilds at its next search (``lexical.rebuild`` logs it): here, the
    local copy goes now."""
    _memory_indexes().drop(namespace.pk)
    return None


def _keyword_memory_stores() -> tuple[Store, ...]:
    """The in-memory keyword indexes (``MEMORYWEB_KEYWORD_ENGINE`` ``auto``, the default,
    or ``memory``; small namespaces whatever the engine)."""
    from apps.memories.models import KeywordChange

    return (
        Store("keyword_memory_index", "in-memory keyword index",
              "Per server process, per namespace searched: each memory's stemmed words and "
              "its conversation context's (apps/memories/keyword_index.py), rebuilt from SQL. "
              "The delete path logs the removal; erasure drops the ids from this process's "
              "index at once, every other process drops them at its next search of the "
              "namespace (before answering it). Counted and checked in this process.",
              ErasedBy.DELETE_PATH,
              count=lambda ns, ids=None: (_memory_indexes().count(ns.pk) if ids is None
                                          else _memory_indexes().held(ns.pk, ids)),
              remaining=lambda ns, erased: (None if ns is None
                                            else _memory_indexes().held(ns.pk, erased.ids)),
              erase=lambda ns, ids: _memory_indexes().forget(ns.pk, ids), after_commit=True,
              rebuild=_memory_index_rebuild),
        Store("keyword_change_log", "keyword index change log",
              "memories_keywordchange: which memory's keyword entries changed (add, remove) "
              "and when, so each process's in-memory index catches up; ids and operation "
              "names only. Pruned after MEMORYWEB_KEYWORD_LOG_MINUTES.",
              ErasedBy.KEPT, models=(KeywordChange,),
              kept_because="ids and operation names, never content; an erasure's remove rows "
              "are how the other processes drop the erased memories from their indexes, and "
              "every row is pruned after MEMORYWEB_KEYWORD_LOG_MINUTES (60 by default)."),
    )


def _kept_stores() -> tuple[Store, ...]:
    """Stores that name memories by id only and are kept on purpose (the reason is given)."""
    from apps.audit.models import AuditEntry, AuditRecord
    from apps.memories.models import BulkJob

    return (
        Store("audit_log", "audit log",
              "audit_auditentry (and its record index audit_auditrecord): who did what to "
              "which record, when.", ErasedBy.KEPT, models=(AuditEntry, AuditRecord),
              kept_because="hash-chained evidence that holds ids, operation names and counts, "
              "never content; removing an entry would break the chain the certificates are "
              "anchored in."),
        Store("bulk_jobs", "bulk jobs",
              "memories_bulkjob: a dashboard bulk action's target memory ids, refusal "
              "reasons and counts.", ErasedBy.KEPT, models=(BulkJob,),
              kept_because="ids, tag names and agent ids an admin chose, never content; the "
              "job's cursor indexes its target list, and a target that is gone is skipped."),
    )


def register_memory_stores() -> None:
    """Called by ``MemoriesConfig.ready``."""
    for store in memory_stores():
        register(store)
    exempt("guardian.UserObjectPermission",
           "namespace roles only: apps/tenancy/members.py grants object permissions on "
           "namespaces, never on memories.")
    exempt("guardian.GroupObjectPermission", "no group is given object permissions.")
