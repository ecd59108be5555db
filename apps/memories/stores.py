"""The registry of stores: every place a memory, or anything derived from it, is held.

One declared list instead of hand-written ones: erasure (execution and its checks),
``verify_certificate``, ``stats`` and ``reindex`` iterate over :func:`stores`, so a store
registered here is erased, verified, counted and rebuilt without touching them; a store
missing from it would make a deletion certificate false, which is why
``tests/memories/test_store_registry.py`` fails when a model that references a memory is
covered by no registered store (:func:`uncovered`).

Each :class:`Store` says how erasure reaches it (:class:`ErasedBy`): with the memory row
(SQL cascade), through the memory delete path, only through erasure's own ``erase``, or
not at all (``KEPT``, with the reason: the audit log keeps ids and counts, never content).
The operations are optional; a consumer skips a store that lacks the one it needs:

- ``count(namespace, ids=None)``: entries held (``stats``; ids: before an erasure);
- ``remaining(namespace, erased)``: how many erased ids or hashes it still holds
  (erasure's checks and ``verify_certificate``; the namespace is None once deleted);
- ``erase(namespace, ids)``: remove them; for a store the delete path already reaches,
  the finishing step (merge the keyword index, delete vectors again: idempotent);
- ``rebuild(namespace, progress)``: re-derive it from SQL, the truth (``reindex``);
- ``touched(namespace, ids)``: what an erasure changes there besides removing the ids
  (listed in the certificate).

Memories registers its own stores (and those of the apps below it, which cannot import
this module: the audit log) from ``MemoriesConfig.ready``; an app above memories with
memory-derived data registers its stores from its own ``AppConfig.ready``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connection, models, transaction

from apps.memories import chroma_files
from apps.tenancy.models import Namespace

#: Ids per statement (well under SQLite's bound-parameter limit).
CHUNK = 500

Progress = Callable[[int], None]


class ErasedBy(StrEnum):
    """How an erasure reaches a store (docs/privacy.md, "The stores")."""

    #: SQL ``ON DELETE CASCADE`` from the memory row: gone in the delete's statement.
    CASCADE = "cascade"
    #: The memory delete path writes it (the rows, keyword rows, outbox, vector unindex);
    #: erasure may add a finishing step (``erase``) and checks it.
    DELETE_PATH = "delete path"
    #: An ordinary delete leaves it; erasure removes it (``erase``) and checks it.
    ERASURE = "erasure"
    #: Deliberately kept by erasure: ``kept_because`` says why (never content).
    KEPT = "kept"


@dataclass(frozen=True)
class Erased:
    """What an erasure removed: memory ids, their content hashes, and the ids of memories
    outside the selection that held identical content (kept, so not counted)."""

    ids: tuple[str, ...]
    hashes: tuple[str, ...] = ()
    retained: tuple[str, ...] = ()


@dataclass(frozen=True)
class Store:
    """One place memory data lives, and what the four consumers may do with it."""

    #: The key in certificates' ``verification`` and ``stats --json``'s ``stores``.
    name: str
    #: What a check asks, in words (the dashboard's certificate card).
    label: str
    #: What it holds and why erasure treats it so (docs/privacy.md lists these).
    description: str
    erased_by: ErasedBy
    #: The SQL models it covers (the registry test matches these against every model
    #: that references a memory).
    models: tuple[type[models.Model], ...] = ()
    kept_because: str = ""
    count: Callable[[Namespace, Sequence[Any] | None], int | None] | None = None
    remaining: Callable[[Namespace | None, Erased], int | None] | None = None
    erase: Callable[[Namespace, Sequence[Any]], None] | None = None
    #: ``erase`` runs after the SQL transaction that deleted the rows (a store outside
    #: SQL, or the record of work on it): a failure leaves the request ``executing`` and
    #: a retried execute runs it again.
    after_commit: bool = False
    #: Held outside the SQL database (may be unavailable; ``stats --no-vectors`` skips it).
    external: bool = False
    #: One entry per memory of the namespace: ``stats`` reports a different count as
    #: "reindex needed" (or the outbox still draining).
    mirrors_memories: bool = False
    rebuild: Callable[[Namespace, Progress], int | None] | None = None
    #: Drop what belongs to namespaces that no longer exist; returns what it dropped, in
    #: words ("the keyword table of deleted namespace 7"). ``reindex`` of every namespace.
    drop_orphans: Callable[[], list[str]] | None = None
    #: Its key in a certificate's ``counts`` (counted before the erasure), if any.
    certificate_count: str | None = None
    #: ``touched(namespace, ids)``: what an erasure of these ids changes in this store
    #: besides removing them (ids and periods, never content), asked before it runs and
    #: listed in the certificate's ``touched`` under the store's name (the rollup nodes
    #: rebuilt without the erased memories, apps/timeline/erasure.py).
    touched: Callable[[Namespace, Sequence[Any]], list[Any]] | None = None
    #: ``export(namespace, selection)``: its rows about a subject (privacy's Selector; None:
    #: the namespace) as dicts, exported as lines typed with the store's name.
    export: Callable[[Namespace, Any], Iterable[dict[str, Any]]] | None = None


_registry: dict[str, Store] = {}
#: Models that look like they reference memories but are declared not to: label -> why.
_exempt: dict[str, str] = {}


def register(store: Store) -> Store:
    """Add a store (registering the very same store again is a no-op)."""
    existing = _registry.get(store.name)
    if existing is not None and existing != store:
        raise ImproperlyConfigured(f"two memory stores are named {store.name!r}")
    _registry[store.name] = store
    return store


def unregister(name: str) -> None:
    """Remove a store (tests that register a fake one)."""
    _registry.pop(name, None)


def stores() -> tuple[Store, ...]:
    """Every registered store, in registration order (the order of certificates' checks)."""
    return tuple(_registry.values())


def get(name: str) -> Store | None:
    return _registry.get(name)


def exempt(label: str, reason: str) -> None:
    """Declare that a model which could name a memory (a generic relation) holds none."""
    _exempt[label] = reason


# --- the registry check -----------------------------------------------------------------

#: A model attribute naming fields that hold memory ids without a foreign key (a JSON list,
#: a UUID column), for models whose field names do not say so: ``memory_id_fields = ("targets",)``.
MEMORY_ID_FIELDS = "memory_id_fields"


def memory_references(model: type[models.Model]) -> list[str]:
    """Why ``model`` may hold a memory or its data: a relation to Memory, a field named or
    declared as holding memory ids, or a generic relation (content type and object id)."""
    from apps.memories.models import Memory

    found = ["the memory rows themselves"] if model is Memory else []
    fields = [f for f in model._meta.get_fields(include_hidden=True) if f.concrete]
    for field in fields:
        if field.is_relation and field.related_model is Memory:
            found.append(f"{field.name} -> Memory")
        elif not field.is_relation and field.name.endswith(("memory_id", "memory_ids")):
            found.append(f"{field.name} holds memory ids")
    found += [f"{name} holds memory ids (declared)" for name in getattr(model, MEMORY_ID_FIELDS, ())]
    names = {f.name for f in fields}
    if (any(f.is_relation and f.related_model is not None
            and f.related_model._meta.label == "contenttypes.ContentType" for f in fields)
            and names & {"object_id", "object_pk"}):
        found.append("generic relation (content type and object id) may name a memory")
    return found


def uncovered(candidates: Iterable[type[models.Model]] | None = None) -> list[str]:
    """The models referencing memories that no registered store covers (nor an exemption),
    as "app.Model: why"; ``candidates`` defaults to every installed model."""
    from django.apps import apps

    covered = {model._meta.label for store in stores() for model in store.models} | set(_exempt)
    problems = []
    for model in apps.get_models() if candidates is None else candidates:
        reasons = memory_references(model)
        if reasons and model._meta.label not in covered:
            problems.append(f"{model._meta.label}: {'; '.join(reasons)}")
    return problems


# --- helpers for SQL stores -------------------------------------------------------------

def chunks(values: Sequence[Any]) -> Iterable[list[Any]]:
    values = list(values)
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def count_in(queryset: models.QuerySet, field: str, values: Sequence[Any]) -> int:
    """Rows of ``queryset`` whose ``field`` is one of ``values`` (chunked)."""
    return sum(queryset.filter(**{f"{field}__in": part}).count() for part in chunks(values))


def _rows(model: type[models.Model], namespace_path: str, id_field: str
          ) -> Callable[[Namespace, Sequence[Any] | None], int]:
    """``count`` of a table keyed by memory id (all of the namespace's, or these ids)."""
    def count(namespace: Namespace, ids: Sequence[Any] | None = None) -> int:
        queryset = model._default_manager.filter(**{namespace_path: namespace})
        return queryset.count() if ids is None else count_in(queryset, id_field, ids)
    return count


def _left(model: type[models.Model], id_field: str
          ) -> Callable[[Namespace | None, Erased], int | None]:
    """``remaining`` of a table keyed by memory id (checked while the namespace exists)."""
    def remaining(namespace: Namespace | None, erased: Erased) -> int | None:
        if namespace is None:
            return None  # its rows went with the namespace
        return count_in(model._default_manager.all(), id_field, erased.ids)
    return remaining


# --- memories' own stores ---------------------------------------------------------------

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
    from apps.memories import lexical

    if ids is not None:
        return lexical.held(namespace.pk, ids)
    if connection.vendor != "sqlite":
        return None  # PostgreSQL indexes a column of the memory row: always in step
    with connection.cursor() as cursor:
        try:
            cursor.execute(f"SELECT count(*) FROM {lexical.fts_table(namespace.pk)}")
        except Exception:  # never written to: no table yet
            return 0
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

    if connection.vendor != "sqlite":
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
            refresh(namespace, list(Memory.objects.filter(namespace=namespace, pk__in=holders)))


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
    from apps.memories import lineage_store
    from apps.memories.models import ExternalId, Memory, MemoryTag, MemoryVersion

    return (
        Store("memories", "memory rows",
              "memories_memory: content, kind, tags, metadata, agent and session ids, "
              "timestamps, recall statistics (access_count, last_recalled_at). Checked by id "
              "even after the namespace is deleted.",
              ErasedBy.DELETE_PATH, models=(Memory,), count=_rows(Memory, "namespace", "pk"),
              remaining=_memories_remaining, certificate_count="memories"),
        Store("content_hashes", "the namespace's memories, by content hash",
              "The same rows asked by content SHA-256: identical text stored again after the "
              "erasure (outside the retained memories) fails the certificate.",
              ErasedBy.DELETE_PATH, remaining=_content_hashes_remaining),
        Store("versions", "version history",
              "memories_memoryversion: each edit's fields before and after (old content).",
              ErasedBy.CASCADE, models=(MemoryVersion,),
              count=_rows(MemoryVersion, "memory__namespace", "memory_id"),
              remaining=_left(MemoryVersion, "memory_id"), certificate_count="versions"),
        Store("tags", "tags", "memories_memorytag: one row per (memory, tag), the tag filter's index.",
              ErasedBy.CASCADE, models=(MemoryTag,),
              count=_rows(MemoryTag, "namespace", "memory_id"),
              remaining=_left(MemoryTag, "memory_id"), certificate_count="tags"),
        Store("external_ids", "other systems' ids",
              "memories_externalid: an importer's or a drop-in route's id for a memory.",
              ErasedBy.CASCADE, models=(ExternalId,),
              count=_rows(ExternalId, "namespace", "memory_id"),
              remaining=_left(ExternalId, "memory_id")),
        lineage_store.store(),
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
              "Chroma, a collection per namespace: the embedding and the filter fields "
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
              count=_rows(IndexOutbox, "namespace", "memory_id"),
              remaining=_left(IndexOutbox, "memory_id"), erase=_outbox_erase, after_commit=True),
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
              "left. With a Chroma server (CHROMA_URL) its files are out of reach: not checked.",
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
    """The in-memory keyword engine (``MEMORYWEB_KEYWORD_ENGINE = "memory"``)."""
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
