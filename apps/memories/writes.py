"""The write path: THE one module through which memories are created, updated, deleted
and erased.

Ingest, the importer, edits (``update``, the batched edits, ``revert``), deletes, erasure
and (to come) the lifecycle jobs all write here, and nothing else writes ``Memory``,
``MemoryVersion`` or ``MemoryTag`` rows, keyword-index rows (``lexical.add/replace/remove``)
or vector-outbox rows: ``tests/memories/test_write_path.py`` fails when a module does. One
place, so a store derived from memories (apps/memories/stores.py) is written the same way
by every door, and a new one is added once.

The services decide: validation, authorization, dedup decisions, Idempotency-Keys and
the wording of audit entries stay theirs. This module writes. A service opens the
write's transaction with :func:`atomic` and writes through the handle it yields::

    with writes.atomic() as write:
        ...  # the service's reads, checks and own rows (an idempotency record)
        write.create(namespace, memories, embeddings, actor=principal, audit=entry)
    # the block is left: the memories are in the vector index

Inside the transaction each operation writes, in this order: the memory rows (claiming
dedup slots, or giving one up), the keyword index, tag rows, versions (and an import's
external ids), the outbox rows that carry the change to the vector index; then it calls
the service's ``audit`` hook (so the entry is in the change's transaction) and sends the
memory signal (apps/memories/changes.py) live listens to. Work on the vector index is
queued on the handle and runs, in order, when the ``atomic`` block is left without an
error: indexed inline for read-your-writes, the outbox rows settled (or kept, with the
failure, for the drain). It runs when the block is left, as the services always did, not
at the outermost commit: inside an enclosing transaction (erasure's) it still runs there,
and an index write that fails is left to the outbox. An update's live event carries the
vectors the index returns, so it is sent with that work, after the block.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.core.errors import Conflict, Unavailable
from apps.memories import changes, context, indexing, lexical, stores, track_record, write_moves
from apps.memories.models import (
    ExternalId,
    IndexOutbox,
    Memory,
    MemoryLink,
    MemoryTag,
    MemoryVersion,
    content_hash,
)
from apps.memories.plain_vectors import forget as forget_plain_vectors
from apps.ops import metrics
from apps.tenancy.models import Namespace

#: ``on_taken(memories, embeddings)``: a concurrent write claimed some of these memories'
#: dedup slots first; returns the memories (and their embeddings) still to insert.
OnTaken = Callable[[list[Memory], np.ndarray | None], tuple[list[Memory], np.ndarray | None]]


@contextmanager
def atomic() -> Iterator[Write]:
    """A memory write's transaction (``transaction.atomic``); the indexing and events the
    writes queued run, in order, once the block is left without an error."""
    write = Write()
    with transaction.atomic():
        yield write
    write._done()


class Write:
    """The writes of one :func:`atomic` block, and the work they queued for after it."""

    def __init__(self) -> None:
        self._after: list[Callable[[], None]] = []
        self._open = True

    def _require_open(self) -> None:
        if not self._open:
            raise RuntimeError("a memory write outside its writes.atomic() block")

    def _queue(self, work: Callable[[], None]) -> None:
        self._after.append(work)

    def _done(self) -> None:
        self._open = False
        for work in self._after:
            work()

    # --- create -------------------------------------------------------------------------

    def create(self, namespace: Namespace, memories: list[Memory], embeddings: np.ndarray | None,
               *, actor: Any, audit: Callable[[list[Memory]], object],
               on_taken: OnTaken | None = None, versions: Sequence[MemoryVersion] = (),
               external_ids: Sequence[ExternalId] = ()) -> list[Memory]:
        """Insert new memories (unsaved rows) with their tag rows, keyword index and outbox
        rows; ``audit(stored)`` then the live ``created`` event. After the block: indexed
        (``fresh`` ids) and counted. Returns the memories inserted.

        ``on_taken`` given (ingest): each memory claims its content's dedup slot, and what
        a concurrent write claimed first is settled by it (see
        :func:`_insert_claiming_slots`); without it (the importer) the rows go in as given.
        ``versions``/``external_ids``: an import's history and other systems' ids.
        """
        self._require_open()
        if not memories:
            return []
        _writable_now(namespace)
        if on_taken is not None:
            for memory in memories:
                memory.dedup_slot = memory.content_hash
            memories, embeddings = _insert_claiming_slots(namespace, memories, embeddings, on_taken)
            if not memories:
                return []
        else:
            Memory.objects.bulk_create(memories)
        lexical.add(namespace.pk, [m.pk for m in memories], written=memories)
        MemoryTag.objects.bulk_create(
            [MemoryTag(memory=m, namespace=namespace, tag=t) for m in memories for t in m.tags])
        MemoryVersion.objects.bulk_create(list(versions))
        ExternalId.objects.bulk_create(list(external_ids))
        outbox = IndexOutbox.objects.bulk_create(
            [IndexOutbox(namespace=namespace, memory_id=m.pk, op=IndexOutbox.Op.UPSERT)
             for m in memories])
        if track_record.counts(actor):
            track_record.add(namespace.pk, track_record.by_agent(memories), "stored")
        audit(memories)
        changes.memories_changed("created", namespace, memories, embeddings, actor)
        outbox_ids = [o.pk for o in outbox]

        def index() -> None:
            indexing.index_inline(namespace, memories, embeddings, outbox_ids, fresh=True)
            metrics.MEMORIES_STORED.inc(len(memories))

        self._queue(index)
        return memories

    # --- update -------------------------------------------------------------------------

    def update(self, memory: Memory, values: Mapping[str, Any], edits: dict[str, Any], *,
               embeddings: np.ndarray | None, actor: Any,
               audit: Callable[[Memory, dict[str, Any]], object], correction: bool = True) -> None:
        """Edit one memory (locked by the caller): set ``values``, bump its version, record
        ``edits`` (field -> before/after) as a version row, re-index its words if the
        content changed and its tag rows if the tags did, an outbox row (``upsert`` for new
        content, else ``metadata``), ``audit(memory, edits)``. After the block: indexed
        (``embeddings``: of the new content, None to embed it then; a metadata edit keeps
        the stored vector) and the live ``updated`` event with the vectors.
        ``correction``: a content change by another than the memory's agent counts against
        that agent's record, unless False (a text consolidation's summarizer wrote).
        """
        self._require_open()
        if "content" in edits and correction and track_record.counts(actor) \
                and getattr(actor, "agent_id", None) != memory.agent_id:
            # Someone else corrected what this agent said: its record counts it.
            track_record.add(memory.namespace_id, track_record.by_agent([memory]), "corrected")
        _apply(memory, values, edits)
        memory.save()
        if "content" in edits:  # its words and kept vector; the next turns' context below
            lexical.replace(memory.namespace_id, [memory.pk])
            forget_plain_vectors([memory.pk])
        if "tags" in edits:
            _replace_tags([memory])
        MemoryVersion.objects.create(memory=memory, version=memory.version,
                                     changed_by=actor.label, changes=edits)
        row = IndexOutbox.objects.create(
            namespace_id=memory.namespace_id, memory_id=memory.pk,
            op=IndexOutbox.Op.UPSERT if "content" in edits else IndexOutbox.Op.METADATA)
        audit(memory, edits)
        namespace = memory.namespace

        def index() -> None:
            vectors = embeddings
            if "content" in edits:
                indexing.index_inline(namespace, [memory], embeddings, [row.pk])
            else:
                vectors = indexing.index_metadata_inline(namespace, [memory], [row.pk])
            changes.memories_changed("updated", namespace, [memory], vectors, actor)

        self._queue(index)
        if "content" in edits:  # after its own index: they read the vector that one keeps
            self._reindex_context(namespace, context.dependents(memory.namespace_id, [memory.pk]))

    def update_many(self, edits: Sequence[tuple[Memory, Mapping[str, Any], dict[str, Any]]], *,
                    actor: Any, audit: Callable[[Memory, dict[str, Any]], object]) -> list[Memory]:
        """Edit many memories (locked by the caller) in a few statements: each
        ``(memory, values, edits)`` as :meth:`update` does, for fields that are not
        embedded (never ``content``), with ``metadata`` outbox rows. After the block: per
        namespace, the filter fields into the vector index and one live event. Returns the
        memories, grouped by namespace (the order they are indexed and announced in).
        """
        self._require_open()
        if any("content" in changed for _, _, changed in edits):
            raise ValueError("update_many edits no content: use update")
        memories = [memory for memory, _, _ in edits]
        for memory, values, changed in edits:
            _apply(memory, values, changed)
        fields = sorted({name for _, _, changed in edits for name in changed})
        Memory.objects.bulk_update(memories, [*fields, "version", "updated_at"])
        retagged = [memory for memory, _, changed in edits if "tags" in changed]
        if retagged:
            _replace_tags(retagged)
        MemoryVersion.objects.bulk_create([
            MemoryVersion(memory=memory, version=memory.version, changed_by=actor.label,
                          changes=changed) for memory, _, changed in edits])
        rows = IndexOutbox.objects.bulk_create([
            IndexOutbox(namespace_id=m.namespace_id, memory_id=m.pk, op=IndexOutbox.Op.METADATA)
            for m in memories])
        for memory, _, changed in edits:
            audit(memory, changed)
        by_namespace: dict[int, list[tuple[Memory, int]]] = {}
        for memory, row in zip(memories, rows, strict=True):
            by_namespace.setdefault(memory.namespace_id, []).append((memory, row.pk))

        def index() -> None:
            for pairs in by_namespace.values():
                group = [m for m, _ in pairs]
                vectors = indexing.index_metadata_inline(group[0].namespace, group,
                                                         [pk for _, pk in pairs])
                changes.memories_changed("updated", group[0].namespace, group, vectors, actor)

        self._queue(index)
        return [memory for pairs in by_namespace.values() for memory, _ in pairs]

    # --- delete -------------------------------------------------------------------------

    def delete(self, namespace: Namespace, ids: Sequence[Any], *, actor: Any,
               audit: Callable[[Namespace, Sequence[Any], int], object], erasure: bool = False,
               secure: bool = False) -> int:
        """Delete memories of one namespace: the rows (versions, tags and external ids by
        cascade), their keyword index rows, ``delete`` outbox rows; ``audit(namespace,
        ids, removed)``, then the live ``deleted`` event (``erasure``: says so, nothing
        more). After the block: removed from the vector index. Returns the rows deleted.
        ``secure``: SQLite zeroes the pages these deletes free (a derived copy of other
        memories' text, such as a replaced timeline summary, leaves nothing a later
        erasure of those memories could miss in free pages).
        """
        self._require_open()
        # The memories indexed with these as their context: the delete unlinks them (SET
        # NULL); their keyword rows and vectors lose the deleted words below.
        dependents = context.dependents(namespace.pk, ids)
        # What a deleted memory superseded is current again (the SET NULL would leave its
        # superseded_at behind); its derived_from links go with the row (cascade).
        for part in stores.chunks(ids):
            Memory.objects.in_namespace_checked(namespace).filter(superseded_by__in=part).exclude(
                pk__in=part).update(superseded_by=None, superseded_at=None)
        if track_record.counts(actor) and not erasure:  # erasures say nothing of the agent
            tally: Counter[str] = Counter()
            for part in stores.chunks(ids):
                tally += track_record.by_agent(Memory.objects.in_namespace_checked(
                    namespace).filter(pk__in=part).values_list("agent_id", "kind"))
            track_record.add(namespace.pk, tally, "deleted")
        removed = 0
        with _secure_delete() if secure else contextlib.nullcontext():
            for part in stores.chunks(ids):
                removed += Memory.objects.in_namespace_checked(namespace).filter(pk__in=part).delete(
                    )[1].get(Memory._meta.label, 0)
            lexical.remove(namespace.pk, ids)
        outbox = IndexOutbox.objects.bulk_create(
            [IndexOutbox(namespace_id=namespace.pk, memory_id=pk, op=IndexOutbox.Op.DELETE)
             for pk in ids])
        audit(namespace, ids, removed)
        changes.memories_deleted(namespace, ids, actor, erasure=erasure)
        memory_ids, outbox_ids = [str(r.memory_id) for r in outbox], [r.pk for r in outbox]
        self._queue(lambda: indexing.unindex_inline(namespace, memory_ids, outbox_ids))
        for memory in dependents:
            memory.context_memory = None
        self._reindex_context(namespace, dependents)
        return removed

    # --- lineage (apps/lifecycle) --------------------------------------------------------

    def supersede(self, namespace: Namespace, members: Sequence[Memory], by: Memory, *,
                  similarity: Mapping[Any, float | None], actor: Any,
                  at: datetime | None = None) -> int:
        """Mark ``members`` (locked by the caller) as said by ``by`` from now on: their
        ``superseded_by``/``superseded_at`` and a ``derived_from`` link from ``by`` to each
        (with its similarity; a member without one gets none). Not an edit of theirs: no
        version, no outbox row (neither index holds the state; recall drops superseded rows
        when it reads them). The caller audits. ``at`` is for an import restoring a
        source's lineage: when the source superseded them (their ``superseded_at`` and the
        links' time; default now). Returns how many were superseded."""
        self._require_open()
        now = at or timezone.now()
        similarity = {str(key): value for key, value in similarity.items()}
        ids = [m.pk for m in members if m.pk != by.pk]
        done = Memory.objects.in_namespace_checked(namespace).filter(pk__in=ids).update(
            superseded_by=by, superseded_at=now)
        MemoryLink.objects.bulk_create([
            MemoryLink(namespace=namespace, source=by, target_id=pk,
                       relation=MemoryLink.Relation.DERIVED_FROM,
                       similarity=similarity.get(str(pk)), created_by=actor.label,
                       created_at=now)
            for pk in ids], ignore_conflicts=True)
        for member in members:
            if member.pk != by.pk:
                member.superseded_by, member.superseded_at = by, now
        return done

    def release(self, namespace: Namespace, by: Memory, only: Sequence[Any] | None = None
                ) -> list[Any]:
        """Undo :meth:`supersede` for the memories ``by`` superseded (all, or ``only``
        these): current again, their ``derived_from`` links from ``by`` removed. The
        caller audits. Returns their ids."""
        self._require_open()
        superseded = Memory.objects.in_namespace_checked(namespace).filter(superseded_by=by)
        if only is not None:
            superseded = superseded.filter(pk__in=list(only))
        ids = list(superseded.values_list("pk", flat=True))
        Memory.objects.filter(pk__in=ids).update(superseded_by=None, superseded_at=None)
        MemoryLink.objects.filter(source=by, target_id__in=ids,
                                  relation=MemoryLink.Relation.DERIVED_FROM).delete()
        return ids

    def rewrite_versions(self, versions: Sequence[MemoryVersion]) -> None:
        """Store these version rows' ``changes`` as the caller rewrote them: an erasure
        scrubbing what erased members gave a kept survivor from its history
        (apps/memories/merge_marks.py). No new version, outbox row or event."""
        self._require_open()
        MemoryVersion.objects.bulk_update(list(versions), ["changes"])

    def link_conflicts(self, namespace: Namespace,
                       pairs: Sequence[tuple[Any, Any, float, Sequence[str]]], *,
                       actor: Any) -> int:
        """``conflicts_with`` links, one per pair ``(a, b, similarity, differs_in)``
        (stored once, the smaller id first; an existing link is kept). Returns how many
        pairs were given a new link."""
        self._require_open()
        return self._link(namespace, MemoryLink.Relation.CONFLICTS_WITH, pairs, actor)

    def keep_apart(self, namespace: Namespace, pairs: Sequence[tuple[Any, Any]], *,
                   actor: Any, apart: bool = True) -> int:
        """``kept_apart`` links, one per pair (a person rejected merging them;
        consolidation never groups them), or with ``apart=False`` those links removed.
        Returns how many links were added or removed."""
        self._require_open()
        if apart:
            return self._link(namespace, MemoryLink.Relation.KEPT_APART,
                              [(a, b, None, ()) for a, b in pairs], actor)
        ordered = [sorted((a, b), key=str) for a, b in pairs]
        query = Q(pk__in=[])
        for low, high in ordered:
            query |= Q(source_id=low, target_id=high)
        return MemoryLink.objects.filter(query, namespace=namespace,
                                         relation=MemoryLink.Relation.KEPT_APART).delete()[0]

    @staticmethod
    def _link(namespace: Namespace, relation: str,
              pairs: Sequence[tuple[Any, Any, float | None, Sequence[str]]], actor: Any) -> int:
        rows = []
        for a, b, similarity, differs_in in pairs:
            low, high = sorted((a, b), key=str)
            rows.append(MemoryLink(namespace=namespace, source_id=low, target_id=high,
                                   relation=relation, similarity=similarity,
                                   differs_in=list(differs_in), created_by=actor.label))
        before = MemoryLink.objects.filter(namespace=namespace).count()
        MemoryLink.objects.bulk_create(rows, ignore_conflicts=True)
        return MemoryLink.objects.filter(namespace=namespace).count() - before

    # --- move (a namespace merge, apps/lifecycle/namespace_merge.py) ---------------------

    def move(self, source: Namespace, target: Namespace, memories: Sequence[Memory],
             vectors: np.ndarray | None, *, duplicates: Mapping[str, Memory], actor: Any,
             audit: Callable[[Sequence[Memory]], object],
             into_clear: bool = False) -> dict[str, list[list[str]]]:
        """Re-home memories of ``source`` (locked by the caller) in ``target``, in place
        (apps/memories/write_moves.py says how each registered store follows; to or from
        an encrypted namespace they are re-sealed for the target, and from an encrypted
        into a plain one only with ``into_clear``). Returns the ids from other systems
        each memory left behind: id -> ``[[system, id], ...]``."""
        self._require_open()
        return write_moves.move(self, source, target, memories, vectors, duplicates=duplicates,
                                actor=actor, audit=audit, into_clear=into_clear)

    def cut_ties(self, namespace: Namespace, ids: Sequence[Any], together: set[str]) -> int:
        """Before ``ids`` leave ``namespace``: undo lineage between them and memories
        staying there (not in ``together``, the memories leaving with them): supersessions
        either way released, conflict links removed. Returns how many ties were cut."""
        self._require_open()
        return write_moves.cut_ties(self, namespace, ids, together)

    def _reindex_context(self, namespace: Namespace, memories: Sequence[Memory]) -> None:
        """Re-index memories whose conversation context changed or went (context.py):
        their keyword rows now, their vectors (re-embedded) after the block, through
        ``upsert`` outbox rows like any write. Not an edit of theirs: no version, audit
        entry or event."""
        if not memories:
            return
        lexical.replace(namespace.pk, [m.pk for m in memories])
        outbox = IndexOutbox.objects.bulk_create(
            [IndexOutbox(namespace_id=namespace.pk, memory_id=m.pk, op=IndexOutbox.Op.UPSERT)
             for m in memories])
        outbox_ids = [r.pk for r in outbox]
        self._queue(lambda: indexing.index_inline(namespace, memories, None, outbox_ids))


# --- erase ------------------------------------------------------------------------------

def erase(namespace: Namespace, ids: Sequence[Any], *, actor: Any,
          audit: Callable[[Namespace, Sequence[Any], int], object]) -> None:
    """Erase memories, inside the erasure's transaction, from every registered store
    (apps/memories/stores.py) that can be erased before the commit: first those an ordinary
    delete leaves (idempotency records, the admin log), then the delete (:meth:`Write.delete`
    in its own block, so the vectors go when it is left; ``audit`` as there), then the
    finishing steps of the stores the delete reached (the keyword index is merged). On
    SQLite the deletes zero the pages they free. The stores erased after the commit are
    :func:`erase_after_commit`'s."""
    def delete() -> None:
        with atomic() as write:
            write.delete(namespace, ids, actor=actor, audit=audit, erasure=True)

    _erase(namespace, ids, delete)


def erase_again(namespace: Namespace, ids: Sequence[Any]) -> None:
    """A retried erasure (the rows are gone): repeat the stores' own steps of :func:`erase`
    (idempotent), so a retry also clears a store that still held erased data."""
    _erase(namespace, ids, None)


def erase_subject(namespace: Namespace, field: str, value: str, before: Any = None
                  ) -> dict[str, int]:
    """Erase what the registered stores hold about a subject apart from its memories (the
    facts an agent's key taught the gateway; ``Store.subject_erase``), made up to
    ``before`` if given, inside the erasure's transaction; returns the rows each store
    deleted (the stores that deleted some)."""
    if field not in stores.SUBJECT_ROW_FIELDS:
        return {}
    erased: dict[str, int] = {}
    with _secure_delete():
        for store in stores.stores():
            if store.subject_erase is not None:
                erased[store.name] = store.subject_erase(namespace, field, value, before)
    return {name: count for name, count in erased.items() if count}


def _erase(namespace: Namespace, ids: Sequence[Any], delete: Callable[[], None] | None) -> None:
    with _secure_delete():
        if ids:
            for store in _erasable(stores.ErasedBy.ERASURE):
                store.erase(namespace, ids)
            if delete is not None:
                delete()
    for store in _erasable(stores.ErasedBy.DELETE_PATH, stores.ErasedBy.CASCADE):
        store.erase(namespace, ids)


def forget_namespace(namespace: Namespace) -> None:
    """Before a namespace is deleted (tenancy's ``namespace_deleting``): what its SQL
    cascade will not reach. The stores only erasure empties (the admin's change log names
    its memories, and held their first characters), then the vector collection — derived
    data first, so a failed SQL delete leaves rows a reindex can rebuild from, never an
    orphan collection nothing points at."""
    from apps.memories.vectorstore import get_vector_store

    ids = [str(pk) for pk in Memory.objects.filter(namespace=namespace).values_list("pk", flat=True)]
    if ids:
        with transaction.atomic(), _secure_delete():
            for store in _erasable(stores.ErasedBy.ERASURE):
                store.erase(namespace, ids)
    vectors = get_vector_store()
    vectors.drop_collection(vectors.collection_name(namespace))


class EraseFailed(Exception):
    """A store erased after the commit failed; ``store`` says which (the cause is chained)."""

    def __init__(self, store: stores.Store) -> None:
        super().__init__(store.label)
        self.store = store


def erase_after_commit(namespace: Namespace, ids: Sequence[Any]) -> None:
    """Erase the ids from the stores outside the SQL transaction (the vectors, then the
    outbox rows recording that work), in registry order; idempotent, so a retried
    erasure repeats it. Stops at the first store that fails (:class:`EraseFailed`)."""
    for store in _erasable(*stores.ErasedBy, after_commit=True):
        try:
            store.erase(namespace, ids)
        except Exception as exc:
            raise EraseFailed(store) from exc


def _erasable(*how: stores.ErasedBy, after_commit: bool = False) -> list[stores.Store]:
    """The registered stores erased this way that have an ``erase`` step in that phase."""
    return [store for store in stores.stores() if store.erase and store.erased_by in how
            and store.after_commit == after_commit]


def secure_deletes() -> contextlib.AbstractContextManager[None]:
    """SQLite: the deletes (and dropped tables) inside zero the pages they free, as an
    erasure's do; elsewhere nothing. For a store dropped whole (a merged namespace's
    keyword table)."""
    return _secure_delete()


@contextmanager
def _secure_delete() -> Iterator[None]:
    """SQLite: zero freed pages instead of leaving content there, for the erasure's deletes.

    The embedded settings turn ``secure_delete`` on for every connection (so ordinary
    updates leave no stale copies either); this holds it on whatever a connection was
    opened with (a DATABASE_URL without the pragma), and restores that setting after."""
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA secure_delete")
        before = cursor.fetchone()[0]
        cursor.execute("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA secure_delete = {int(before)}")


def _writable_now(namespace: Namespace) -> None:
    """The namespace is not archived, read inside the write's transaction: the services'
    request-time check (tenancy's ``check_writable``) may have run before a namespace
    merge archived it, and a store committing after the merge's last look would stay in
    the archived source. SQLite's write lock (``BEGIN IMMEDIATE``) orders this read after
    the archive's commit; on PostgreSQL ``FOR SHARE`` waits for it (and lets concurrent
    writers through together)."""
    sql, params = (Namespace.objects.filter(pk=namespace.pk).values_list("archived_at")
                   .query.sql_with_params())
    lock = " FOR SHARE" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(sql + lock, params)
        row = cursor.fetchone()
    if row is not None and row[0] is not None:
        raise Conflict(f"namespace {namespace.slug!r} is archived; writes are refused until a "
                       "system admin unarchives it.", field="namespace")


# --- links ------------------------------------------------------------------------------

def link_near_duplicate(memory_id: Any, target_id: Any) -> bool:
    """Point a memory at the memory it nearly duplicates (an import restoring its source's
    links once every record is in). Not an edit: no version, outbox row or event (the link
    is in neither the vector index nor a memory's history). False if the memory is gone."""
    return bool(Memory.objects.filter(pk=memory_id).update(near_duplicate_of_id=target_id))


# --- helpers ----------------------------------------------------------------------------

def _apply(memory: Memory, values: Mapping[str, Any], edits: Mapping[str, Any]) -> None:
    """Set an edit's values on the row. New content gives up its old words' dedup slot
    rather than keep their hash, and claims none (ingest's; edits may repeat content)."""
    for name, value in values.items():
        setattr(memory, name, value)
    if "content" in edits:
        memory.content_hash = content_hash(memory.content, memory.namespace_id)
        memory.dedup_slot = None
    memory.version += 1
    memory.updated_at = timezone.now()


def _replace_tags(memories: Sequence[Memory]) -> None:
    MemoryTag.objects.filter(memory__in=memories).delete()
    MemoryTag.objects.bulk_create([MemoryTag(memory=m, namespace_id=m.namespace_id, tag=t)
                                   for m in memories for t in m.tags])


def _insert_claiming_slots(namespace: Namespace, memories: list[Memory],
                           embeddings: np.ndarray | None, on_taken: OnTaken
                           ) -> tuple[list[Memory], np.ndarray | None]:
    """Insert new memories, each claiming its content's dedup slot (unique per namespace);
    what a concurrent write claimed first is settled by ``on_taken``.

    Insert first, look after a conflict: the unique constraint, not a prior read, decides
    who stores. On a conflict the insert's savepoint rolls back and ``on_taken`` reads the
    winners (PostgreSQL has waited for their commit, and READ COMMITTED shows it to the
    next statement; on SQLite they committed before this transaction took the write lock)
    and leaves their memories out; slots held by memories that have since expired (or
    whose words a job changed around the services) are released; the rest is inserted
    again. Rows go in content-hash order, so concurrent batches take the slots' locks in
    one order and never deadlock. Returns the memories inserted and their embeddings.
    """
    for _ in range(len(memories) + 3):  # each conflict settles at least one slot
        try:
            with transaction.atomic():
                Memory.objects.bulk_create(sorted(memories, key=lambda m: m.content_hash))
            return memories, embeddings
        except IntegrityError:
            pass
        digests = [m.content_hash for m in memories]
        memories, embeddings = on_taken(memories, embeddings)
        Memory.objects.filter(namespace=namespace, dedup_slot__in=digests).filter(
            Q(expires_at__lte=timezone.now()) | ~Q(content_hash=F("dedup_slot"))
        ).update(dedup_slot=None)
        if not memories:
            return [], None
    raise Unavailable("concurrent writes of the same content kept conflicting; retry.")
