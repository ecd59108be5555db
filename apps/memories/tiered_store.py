"""The embedded vector store with small namespaces outside Chroma.

A namespace's collection starts in the small index (apps/memories/small_index.py: one
SQLite file, exact brute-force search) and moves into its own Chroma collection once it
holds more than ``MEMORYWEB_SMALL_INDEX_LIMIT`` vectors; it never moves back (a
namespace that shrank stays in Chroma until a reindex rebuilds it, which starts small
again). Collections Chroma already holds (written before this existed, or with the limit
at 0) stay there. Every caller goes through :class:`VectorStore`'s interface and cannot
tell where a namespace lives, except by speed: a recall in a small namespace no longer
loads an HNSW index into Chroma's cache (docs/performance.md).

One process owns the embedded store (vectorstore.py's lock), so which side holds a
collection is known here without asking anyone else: the small index's own table says
which it holds; the rest are Chroma's. The move copies the vectors into Chroma, then
drops them from the small index; a read that raced the drop asks Chroma.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from django.conf import settings

from apps.memories.chroma_files import COPY_PAGE, persist_path, put_rows
from apps.memories.small_index import SmallIndex
from apps.memories.vectorstore import (
    CONTEXT_KEY,
    NOT_DUPLICATED,
    VectorHit,
    VectorStore,
    _swapped,
    _without_stale_keys,
)
from apps.tenancy.models import Namespace


def open_store(client) -> VectorStore:
    """The store on ``client``: the embedded one with the small index in front (always,
    so collections it holds stay readable even with the limit turned to 0: they move to
    Chroma at their next write), a Chroma server's as it is."""
    return TieredVectorStore(client) if persist_path(client) is not None else VectorStore(client)


class TieredVectorStore(VectorStore):
    """The embedded VectorStore with the small index in front of Chroma."""

    def __init__(self, client) -> None:
        super().__init__(client)
        assert self.path is not None, "the small index lives beside the embedded Chroma"
        self.small = SmallIndex(self.path)
        #: Collection names known to live in Chroma (asked once per process).
        self._in_chroma: set[str] = set()
        #: Collections both sides hold: a move that stopped between its copy and its drop
        #: (a crash). The small side has every write since; the move is finished at the
        #: collection's next use (:meth:`_finish_move`).
        self._unfinished: set[str] = self.unfinished_moves()

    def unfinished_moves(self) -> set[str]:
        """The collections both the small index and Chroma hold (read at start)."""
        with self._gate.shared():
            chroma = {getattr(found, "name", found) for found in self.client.list_collections()}
        return self.small.names() & chroma

    # --- where a collection lives -------------------------------------------------------

    def _chroma_has(self, name: str) -> bool:
        from chromadb.errors import NotFoundError

        if name in self._in_chroma or name in self._collections:
            return True
        with self._gate.shared():
            try:
                self.client.get_collection(name=name, embedding_function=self._ef)
            except NotFoundError:
                return False
        self._in_chroma.add(name)
        return True

    def _small_name(self, namespace: Namespace, *, reading: bool) -> tuple[Namespace, str | None]:
        """``(namespace, name)`` when its collection is the small index's, ``(namespace,
        None)`` when Chroma's. A read from a row older than a reindex swap follows it to
        the current collection. A collection that exists nowhere: a write makes it small
        (unless the limit is 0: Chroma); a read gets the name and an empty answer, and
        makes nothing (a namespace being deleted is not made again by a late read)."""
        name = self.collection_name(namespace)
        if name in self._unfinished:
            self._finish_move(namespace, name)
        if self.small.holds(name):
            return namespace, name
        if self._chroma_has(name):
            return namespace, None
        if reading:
            if (current := _swapped(namespace)) is not None:
                return self._small_name(current, reading=True)
            return namespace, name
        if settings.MEMORYWEB_SMALL_INDEX_LIMIT <= 0:
            return namespace, None
        self.small.create(name)
        return namespace, name

    def _finish_move(self, namespace: Namespace, name: str) -> None:
        """A move a crash stopped after its copy: copied again from the small side (which
        has every write since) and dropped there, under the collection's writer lock."""
        with self._writer(name):
            if name in self._unfinished:
                if self.small.holds(name):
                    self._move_to_chroma(namespace, name)
                self._unfinished.discard(name)

    # --- writes -------------------------------------------------------------------------

    def upsert(self, namespace: Namespace, ids: Sequence[str], embeddings: np.ndarray,
               metadatas: Sequence[Mapping[str, Any]], *, fresh: bool = False) -> None:
        if not ids:
            return
        _, name = self._small_name(namespace, reading=False)
        if name is not None:
            with self._writer(name):
                if self.small.holds(name):
                    self.small.upsert(name, ids, embeddings, metadatas)
                    if self.small.count(name) > settings.MEMORYWEB_SMALL_INDEX_LIMIT:
                        self._move_to_chroma(namespace, name)
                    return
        super().upsert(namespace, ids, embeddings, metadatas, fresh=fresh)

    def _move_to_chroma(self, namespace: Namespace, name: str) -> None:
        """Copy the collection into Chroma, then drop it here (the caller holds its
        writer lock: no write to it runs meanwhile; reads go on, from here until the
        drop). A Chroma collection already there (a move a crash stopped) is made equal
        to the small side: ids the small side no longer has deleted, filter keys it no
        longer has cleared."""
        ids, vectors, metadatas = self.small.rows(name)
        with self._using(name):
            collection = self.collection(namespace)
            if collection.count():  # left by an earlier move: only what is here now
                kept = set(ids)
                gone = [i for i in self._chroma_ids(collection) if i not in kept]
                for start in range(0, len(gone), COPY_PAGE):
                    collection.delete(ids=gone[start:start + COPY_PAGE])
                if ids:
                    metadatas = _without_stale_keys(collection, ids, metadatas)
            put_rows(collection.upsert, ids, vectors, metadatas)
            self._sync_as_set(collection)
        self._in_chroma.add(name)
        self.small.drop(name)

    @staticmethod
    def _chroma_ids(collection: Any) -> list[str]:
        found: list[str] = []
        while batch := collection.get(include=[], limit=COPY_PAGE, offset=len(found))["ids"]:
            found.extend(batch)
        return found

    def update_metadata(self, namespace: Namespace, ids: Sequence[str],
                        metadatas: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        _, name = self._small_name(namespace, reading=False)
        if name is not None:
            with self._writer(name):
                if self.small.holds(name):
                    return self.small.update_metadata(name, ids, metadatas)
        return super().update_metadata(namespace, ids, metadatas)

    def delete(self, namespace: Namespace, ids: Sequence[str]) -> None:
        if not ids:
            return
        name = self.collection_name(namespace)
        if name in self._unfinished:  # both sides hold it: one side first
            self._finish_move(namespace, name)
        if self.small.holds(name):
            with self._writer(name):
                if self.small.holds(name):
                    self.small.delete(name, ids)
                    return
        if self._chroma_has(name):
            super().delete(namespace, ids)

    def drop_collection(self, name: str) -> None:
        """Gone from wherever it lives (under its writer lock: a move running meanwhile
        does not put it back in Chroma). Chroma's drop, and its scrub, which restarts
        Chroma's engine, unless the collection was the small index's alone: a retried
        drop of a Chroma collection (gone already, its scrub failed) scrubs again."""
        with self._writer(name):
            was_small = self.small.holds(name)
            self.small.drop(name)
            self._unfinished.discard(name)
            if not was_small or self._chroma_has(name):
                self._in_chroma.discard(name)
                super().drop_collection(name)

    def compact(self, namespace: Namespace) -> bool:
        """A small collection's deleted rows are zeroed as they go (``secure_delete``);
        the log is emptied here. A Chroma collection is rewritten (VectorStore.compact)."""
        name = self.collection_name(namespace)
        if name in self._unfinished:  # both sides hold it: one side first
            self._finish_move(namespace, name)
        self.small.checkpoint()
        if self.small.holds(name) and not self._chroma_has(name):
            return True
        return super().compact(namespace)

    # --- reads --------------------------------------------------------------------------

    def _read(self, namespace: Namespace, small: Any, chroma: Any) -> Any:
        """``small(name)`` when the collection lives in the small index, else
        ``chroma(namespace)``. A collection the small index stopped holding during the
        read (moved to Chroma, or dropped by a reindex swap) is asked again, wherever it
        is now; one that exists nowhere answers as an empty small one."""
        current, name = self._small_name(namespace, reading=True)
        if name is None:
            return chroma(current)
        held = self.small.holds(name)
        found = small(name)
        if not held or self.small.holds(name):
            return found
        return self._read(current, small, chroma)

    def _readable(self, namespace: Namespace):
        """Chroma's collection for a read, never made here: a name Chroma lacks is its
        NotFoundError, which the read answers by following a reindex swap (the current
        collection may be the small index's; VectorStore._readable would make it in
        Chroma)."""
        from chromadb.errors import NotFoundError

        name = self.collection_name(namespace)
        if name not in self._collections and not self._chroma_has(name):
            raise NotFoundError(f"Collection {name} does not exist.")
        return super()._readable(namespace)

    def query(self, namespace: Namespace, embedding: np.ndarray, n: int,
              where: dict | None) -> list[VectorHit]:
        return self._read(
            namespace,
            lambda name: [VectorHit(i, s) for i, s in self.small.query(name, embedding, n, where)],
            lambda current: super(TieredVectorStore, self).query(current, embedding, n, where))

    def nearest(self, namespace: Namespace, embeddings: np.ndarray,
                within: float | None = None) -> list[VectorHit | None]:
        def small(name: str) -> list[VectorHit | None]:
            found = self.small.nearest(name, embeddings, NOT_DUPLICATED, within)
            return [VectorHit(*hit) if hit else None for hit in found]
        return self._read(namespace, small, lambda current: super(
            TieredVectorStore, self).nearest(current, embeddings, within))

    def embeddings(self, namespace: Namespace, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        return self._read(namespace, lambda name: self.small.embeddings(name, ids),
                          lambda current: super(TieredVectorStore, self).embeddings(current, ids))

    def count(self, namespace: Namespace) -> int:
        return self._read(namespace, self.small.count,
                          lambda current: super(TieredVectorStore, self).count(current))

    def context_holders(self, namespace: Namespace, context_ids: Sequence[str]) -> list[str]:
        if not context_ids:
            return []
        where = {CONTEXT_KEY: {"$in": [str(i) for i in context_ids]}}
        return self._read(
            namespace, lambda name: self.small.ids_where(name, where),
            lambda current: super(TieredVectorStore, self).context_holders(current, context_ids))

    def ids_page(self, namespace: Namespace, offset: int, limit: int) -> list[str]:
        return self._read(
            namespace, lambda name: self.small.ids_page(name, offset, limit),
            lambda current: super(TieredVectorStore, self).ids_page(current, offset, limit))

    def close(self) -> None:
        self.small.close()
        super().close()
