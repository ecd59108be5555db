"""ChromaDB access: one collection per namespace, vectors computed by MemoryWeb.

Chroma holds only ids, vectors and the scalar fields recall filters on; the content
stays in SQL (the truth), so making a memory unreachable in Chroma is deleting its id.

Deleting is not erasing on disk (measured with chromadb 1.5.9, docs/privacy.md, "What
erasure reaches on disk in the vector store"): the embedded PersistentClient keeps a
deleted vector in its HNSW files (hnswlib marks it deleted), in its write-ahead log
(``embeddings_queue`` in ``chroma.sqlite3``, with the filter metadata) until the HNSW
segment next persists, and in the SQLite pages its rows freed; ``delete_collection``
leaves the collection's segment directory (the HNSW files) behind. So erasure compacts
(:meth:`VectorStore.compact`: the namespace's live vectors copied into a fresh
collection, the old one dropped with its directory, ``chroma.sqlite3`` vacuumed), a
dropped collection takes its directory along (:meth:`VectorStore.drop_collection`), and
chroma_files.py has the details and says what the files still hold (``disk_residue``).
"""

from __future__ import annotations

import math
import os
import sqlite3
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from apps.memories import chroma_cache, sealing
from apps.memories.chroma_files import (
    CHROMA_DB,
    REWRITE_SUFFIX,
    Gate,
    copy_collection,
    orphan_segments,
    persist_path,
    remove_dir,
    scrub_freed_memory,
    zero_unused_capacity,
)
from apps.memories.hnsw import hnsw_configuration, searching_as_set, sync_as_set, syncs_every_write
from apps.memories.vector_nearest import nearest_allowed
from apps.tenancy.models import Namespace

TAG_KEY = "t:"  # metadata key prefix marking a tag, value True
META_KEY = "m:"  # metadata key prefix for a scalar user-metadata value
#: Kinds a new memory is never a near-duplicate of (``nearest``).
NOT_DUPLICATED = ("event", "summary")
CONTEXT_KEY = "context_id"  # the memory whose words were embedded with this one (context.py)


@dataclass(frozen=True)
class VectorHit:
    id: str
    similarity: float  # cosine similarity, 1 - cosine distance


def chroma_metadata(memory) -> dict[str, Any]:
    """The filterable fields of a memory as Chroma metadata (scalars only)."""
    meta: dict[str, Any] = {
        "agent_id": memory.agent_id,
        "session_id": memory.session_id or "",
        "kind": memory.kind,
        "created_ts": memory.created_at.timestamp(),
        # When it happened (occurred_at, else created_at): occurred_* filters and `after`.
        "event_ts": memory.event_time.timestamp(),
    }
    if memory.context_memory_id is not None:  # whose words the vector holds too (context.py)
        meta[CONTEXT_KEY] = str(memory.context_memory_id)
    for tag in memory.tags:
        meta[TAG_KEY + tag] = True
    tokens = memory.metadata_blind
    if tokens is None and sealing.namespace_encrypted(
            memory.namespace_id, memory._state.fields_cache.get("namespace")):
        tokens = sealing.blind_metadata(memory.namespace_id, memory.metadata)  # not saved yet
    if tokens is not None:  # an encrypted namespace: tokens, never the values
        meta.update({META_KEY + key: token for key, token in tokens.items()})
        return meta
    for key, value in (memory.metadata or {}).items():
        if isinstance(value, (str, bool)) or (
            isinstance(value, int) and -(2**63) <= value < 2**63
        ) or (isinstance(value, float) and math.isfinite(value)):
            meta[META_KEY + key] = value
    return meta


def _without_stale_keys(collection, ids: Sequence[str],
                        metadatas: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``metadatas`` plus ``None`` for every key a stored row has and the new one lacks.

    Chroma merges an upsert's metadata into the stored one: a tag or metadata key an
    edit removed would stay filterable in the vector index (a recall filtered on the old
    tag still found the memory). ``None`` deletes a key.
    """
    stored = collection.get(ids=list(ids), include=["metadatas"])
    before = dict(zip(stored["ids"], stored["metadatas"] or [], strict=True))
    return [{**meta, **dict.fromkeys(set(before.get(memory_id) or {}) - set(meta))}
            for memory_id, meta in zip(ids, metadatas, strict=True)]


def _swapped(namespace: Namespace) -> Namespace | None:
    """``namespace`` with its current collection if a reindex swapped it since the caller
    read the row (and then dropped the old one), else None. A read that raced the swap
    asks again instead of failing (a recall during ``manage.py reindex``)."""
    from django.db import DatabaseError, connection

    opened = connection.connection is None  # a worker thread's (recall's vector channel)
    try:
        current = (Namespace.objects.filter(pk=namespace.pk)
                   .values_list("collection", flat=True).first())
    except DatabaseError:
        # A worker thread cannot always read SQL (SQLite's shared-cache memory database while a
        # test's transaction holds it: "schema is locked"): read the collection the caller named.
        return None
    finally:
        if opened and not connection.in_atomic_block:
            connection.close()  # not kept open by a thread that has no request to end it
    if current is None or current == namespace.collection:
        return None
    return Namespace(pk=namespace.pk, slug=namespace.slug, collection=current)


class VectorStore:
    def __init__(self, client):
        from apps.memories.embeddings import MemoryWebEmbeddingFunction

        self.client = client
        self._ef = MemoryWebEmbeddingFunction()
        self._collections: dict[str, Any] = {}
        self._lock = threading.Lock()
        #: Every operation is shared; a rewrite of Chroma's files is alone.
        self._gate = Gate()
        #: Writes to one collection, and ``compact`` copying it, one at a time.
        self._writers: dict[str, threading.Lock] = {}
        #: The embedded store's directory (None: a Chroma server, whose files are its own).
        self.path = persist_path(client)
        #: Embedded: the collections the engine holds, kept under Chroma's cache size
        #: (chroma_cache.py: an evicted collection comes back without its latest vectors).
        self.open = (chroma_cache.OpenCollections(chroma_cache.open_limit())
                     if self.path is not None else None)

    def _writer(self, name: str) -> threading.Lock:
        with self._lock:
            return self._writers.setdefault(name, threading.Lock())

    @contextmanager
    def _writing(self, name: str) -> Iterator[None]:
        """A write to one collection: after any other write to it (or its ``compact``)."""
        with self._writer(name), self._using(name):
            yield

    @contextmanager
    def _using(self, name: str) -> Iterator[None]:
        """An operation on one collection. Embedded, the engine is restarted first when it
        holds as many collections as it may (and not this one) or a collection's settings
        changed (chroma_cache.py); a busy store puts that off unless Chroma's cache is
        nearly full."""
        if self.open is not None:
            chroma_cache.restart_if_due(self.open, self._gate, self.client, name)
        with self._gate.shared():
            if self.open is not None:
                self.open.add(name)
            yield

    def collection_name(self, namespace: Namespace) -> str:
        return settings.CHROMA_COLLECTION_PREFIX + namespace.collection

    def collection(self, namespace: Namespace):
        name = self.collection_name(namespace)
        found = self._collections.get(name)
        if found is None:
            with self._lock:
                found = self._collections.get(name)
                if found is None:
                    found = searching_as_set(self.client.get_or_create_collection(
                        name=name,
                        embedding_function=self._ef,
                        configuration=hnsw_configuration(),
                        metadata={"namespace": namespace.slug},
                    ))
                    self._collections[name] = found
            self._sync_as_set(found)
        return found

    def _sync_as_set(self, collection) -> None:
        """The collection's ``sync_threshold`` for its size; a change applies when the
        engine next starts (embedded: at the next operation)."""
        if sync_as_set(collection) and self.open is not None:
            self.open.stale = True

    def _readable(self, namespace: Namespace):
        """The collection a read uses: opened, never created, unless the namespace has
        none yet. A reader holding the row from before a reindex swap must not re-create
        (empty) the collection the swap dropped: it reads the current one instead."""
        from chromadb.errors import NotFoundError

        name = self.collection_name(namespace)
        found = self._collections.get(name)
        if found is not None:
            return found
        try:
            found = self.client.get_collection(name=name, embedding_function=self._ef)
        except NotFoundError:  # dropped by a swap, or never written to
            return self.collection(_swapped(namespace) or namespace)
        found = searching_as_set(found)
        self._sync_as_set(found)
        with self._lock:
            return self._collections.setdefault(name, found)

    def upsert(
        self,
        namespace: Namespace,
        ids: Sequence[str],
        embeddings: np.ndarray,
        metadatas: Sequence[Mapping[str, Any]],
        *,
        fresh: bool = False,
    ) -> None:
        """Write vectors and filter fields; ``fresh``: ids never written before (an
        ingest), which have no stored keys to clear, so the read is skipped."""
        if not ids:
            return
        with self._writing(self.collection_name(namespace)):
            collection = self.collection(namespace)
            if not fresh:
                metadatas = _without_stale_keys(collection, ids, metadatas)
            collection.upsert(ids=list(ids), embeddings=embeddings, metadatas=metadatas)
            if syncs_every_write(collection):  # grown past the size that syncs every write?
                self._sync_as_set(collection)

    def update_metadata(self, namespace: Namespace, ids: Sequence[str],
                        metadatas: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Replace the filter fields of stored ids, keeping their vectors: an edit that
        left the embedded text alone (tags, kind, metadata) needs no embedding model.

        Keys the new metadata lacks are deleted (as ``upsert`` does). Returns the stored
        vectors of the ids updated; ids the collection lacks are left out, untouched,
        for the caller to index in full.
        """
        if not ids:
            return {}
        with self._writing(self.collection_name(namespace)):
            collection = self.collection(namespace)
            stored = collection.get(ids=list(ids), include=["metadatas", "embeddings"])
            before = dict(zip(stored["ids"], stored["metadatas"] or [], strict=True))
            vectors = {i: np.asarray(v, dtype=np.float32)
                       for i, v in zip(stored["ids"], stored["embeddings"], strict=True)}
            found = [(i, meta) for i, meta in zip(ids, metadatas, strict=True) if i in before]
            if found:
                collection.update(
                    ids=[i for i, _ in found],
                    metadatas=[{**meta, **dict.fromkeys(set(before[i] or {}) - set(meta))}
                               for i, meta in found])
        return vectors

    def delete(self, namespace: Namespace, ids: Sequence[str]) -> None:
        """Make ids unreachable (their bytes stay in Chroma's files until ``compact``)."""
        if ids:
            with self._writing(self.collection_name(namespace)):
                self.collection(namespace).delete(ids=list(ids))

    def query(
        self, namespace: Namespace, embedding: np.ndarray, n: int, where: dict | None
    ) -> list[VectorHit]:
        from chromadb.errors import NotFoundError

        try:
            with self._using(self.collection_name(namespace)):
                result = self._readable(namespace).query(
                    query_embeddings=embedding.reshape(1, -1),
                    n_results=n,
                    where=where or None,
                    include=["distances"],
                )
        except NotFoundError:
            if (current := _swapped(namespace)) is None:
                raise
            return self.query(current, embedding, n, where)
        ids = result["ids"][0]
        distances = result["distances"][0]
        return [VectorHit(i, 1.0 - float(d)) for i, d in zip(ids, distances, strict=True)]

    def nearest(self, namespace: Namespace, embeddings: np.ndarray,
                within: float | None = None) -> list[VectorHit | None]:
        """The closest stored vector to each row of ``embeddings`` (None: none), among the
        memories a new one may duplicate: never an event (the turn a fact came from) nor a
        summary (the timeline replaces its own at each rebuild), or the one hit asked for
        would often be one of those and hide the real near-duplicate behind it.
        ``within``: only hits of at least this similarity (None below it), found cheaper
        (vector_nearest.py)."""
        from chromadb.errors import NotFoundError

        try:
            with self._using(self.collection_name(namespace)):
                collection = self._readable(namespace)
                if not len(embeddings) or not (size := collection.count()):
                    return [None] * len(embeddings)
                found = nearest_allowed(collection, np.asarray(embeddings), NOT_DUPLICATED, size,
                                        within)
        except NotFoundError:
            if (current := _swapped(namespace)) is None:
                raise
            return self.nearest(current, embeddings, within)
        return [VectorHit(hit[0], 1.0 - hit[1]) if hit else None for hit in found]

    def embeddings(self, namespace: Namespace, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors by id (ids not in the index are left out)."""
        from chromadb.errors import NotFoundError

        if not ids:
            return {}
        try:
            with self._using(self.collection_name(namespace)):
                found = self._readable(namespace).get(ids=list(ids), include=["embeddings"])
        except NotFoundError:
            if (current := _swapped(namespace)) is None:
                raise
            return self.embeddings(current, ids)
        return {i: np.asarray(v, dtype=np.float32)
                for i, v in zip(found["ids"], found["embeddings"], strict=True)}

    def count(self, namespace: Namespace) -> int:
        with self._using(self.collection_name(namespace)):
            return self._readable(namespace).count()

    def context_holders(self, namespace: Namespace, context_ids: Sequence[str]) -> list[str]:
        """The ids whose vector was embedded with one of ``context_ids`` as its
        conversation context (apps/memories/context.py): erasure's checks."""
        if not context_ids:
            return []
        where = {CONTEXT_KEY: {"$in": [str(i) for i in context_ids]}}
        with self._using(self.collection_name(namespace)):
            return list(self._readable(namespace).get(where=where, include=[])["ids"])

    def ids_page(self, namespace: Namespace, offset: int, limit: int) -> list[str]:
        with self._using(self.collection_name(namespace)):
            return self._readable(namespace).get(include=[], limit=limit, offset=offset)["ids"]

    def all_ids(self, namespace: Namespace, page: int = 5000) -> set[str]:
        ids: set[str] = set()
        offset = 0
        while True:
            batch = self.ids_page(namespace, offset, page)
            ids.update(batch)
            if len(batch) < page:
                return ids
            offset += page

    def drop_collection(self, name: str) -> None:
        """Delete a collection; one that is already gone is fine, other errors propagate.

        Embedded: its files go too. Chroma's ``delete_collection`` leaves the segment
        directory (the HNSW files, every vector) and the SQLite pages of its log and
        metadata rows; the directories of segments Chroma no longer knows are removed and
        ``chroma.sqlite3`` is vacuumed (:meth:`_scrub`), so a retried drop (the collection
        already gone) finishes the job too."""
        from chromadb.errors import NotFoundError

        with self._gate.alone():
            with self._lock:
                self._collections.pop(name, None)
            try:
                self.client.delete_collection(name)
            except NotFoundError:
                pass
            self._scrub()

    def compact(self, namespace: Namespace) -> bool:
        """Rewrite the namespace's collection so that Chroma's files hold only the vectors
        it has now: erasure's last step (docs/privacy.md). False with a Chroma server
        (CHROMA_URL), whose files are out of reach (and which keeps a dropped collection's
        directory too: rebuilding there would only move the vectors).

        Deleted vectors stay in the HNSW files (marked deleted), in Chroma's log until the
        index next persists (up to ``hnsw:sync_threshold`` writes later, or never in an idle
        namespace), and in freed SQLite pages. So the live vectors and their filter fields
        are copied, without re-embedding, into a fresh collection; the old one is dropped,
        the fresh one takes its name, the old segment directory is removed and
        ``chroma.sqlite3`` vacuumed. Writes to the namespace wait during the copy (reads go
        on); every operation waits during the swap and the vacuum. Costs time proportional
        to the namespace (measured: about 0.5 s per 1,000 vectors): erasure only.
        """
        from chromadb.errors import NotFoundError

        if self.path is None:
            return False
        name = self.collection_name(namespace)
        temp = name + REWRITE_SUFFIX
        with self._writer(name):  # the namespace's writes wait until the swap is done
            with self._gate.shared():
                try:
                    old = self.client.get_collection(name=name, embedding_function=self._ef)
                except NotFoundError:
                    old = None  # never written to, or dropped: only the files to scrub
                if old is not None:
                    self._delete_quietly(temp)  # left by an interrupted rewrite
                    fresh = self.client.create_collection(
                        name=temp, embedding_function=self._ef,
                        configuration=hnsw_configuration(old.count()),
                        metadata=old.metadata or {"namespace": namespace.slug})
                    try:
                        copy_collection(old, fresh)
                    except BaseException:
                        self._delete_quietly(temp)
                        raise
            with self._gate.alone():
                if old is not None:
                    with self._lock:
                        self._collections.pop(name, None)
                    self.client.delete_collection(name)
                    fresh.modify(name=name)
                self._scrub()
        return True

    def _delete_quietly(self, name: str) -> None:
        from chromadb.errors import NotFoundError

        try:
            self.client.delete_collection(name)
        except NotFoundError:
            pass

    def _scrub(self) -> None:
        """Embedded, with the store alone: remove the directories of segments Chroma no
        longer knows, then vacuum ``chroma.sqlite3`` so the pages its deleted rows freed
        (log entries with vectors, metadata) are gone from the file.

        Another connection must not vacuum under Chroma's busy one (measured: Chroma's
        reads failed with "collection does not exist" and the vacuum saw a malformed
        image), so Chroma's engine is stopped (its database and HNSW files closed), the
        file vacuumed, and the engine started again in the same client: collections
        opened before stay usable, HNSW indexes reload on their next use."""
        if self.path is None:
            return
        chroma_cache.restart_engine(self.client, while_stopped=self._scrub_files)
        if self.open is not None:
            self.open.clear()

    def _scrub_files(self) -> None:
        """With the engine stopped: orphan segment directories removed, unused HNSW
        capacity zeroed, ``chroma.sqlite3`` vacuumed."""
        for directory in orphan_segments(self.path):
            remove_dir(directory)
        zero_unused_capacity(self.path)
        connection = sqlite3.connect(self.path / CHROMA_DB, timeout=60, isolation_level=None)
        try:
            connection.execute("VACUUM")
        finally:
            connection.close()

    def forget_cached(self, namespace: Namespace) -> None:
        with self._lock:
            self._collections.pop(self.collection_name(namespace), None)

    def heartbeat(self) -> None:
        with self._gate.shared():
            self.client.heartbeat()

    def close(self) -> None:
        self.client.close()  # Chroma flushes and closes its files


_store: VectorStore | None = None
_store_lock = threading.Lock()
#: True in the process that owns the data directory (the server: apps/server/control.py).
_owner = False


def make_client():
    """A Chroma client: HTTP when CHROMA_URL is set, else persistent under DATA_DIR."""
    if settings.CHROMA_URL:
        from urllib.parse import urlparse

        from apps.memories.chroma_http import http_client

        url = urlparse(settings.CHROMA_URL)
        return http_client(url.hostname or "127.0.0.1",
                           url.port or (443 if url.scheme == "https" else 8000),
                           url.scheme == "https")
    _lock_embedded_store()
    try:
        return _persistent_client(settings.CHROMA_PATH)
    except BaseException:
        _unlock_embedded_store()
        raise


def _persistent_client(path: Path):
    """The embedded client on ``path`` (the caller holds the directory's lock)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    scrub_freed_memory()
    return chromadb.PersistentClient(
        path=str(path), settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False))


_lock_file = None
_lock_mutex = threading.Lock()


def _lock_embedded_store() -> None:
    """One process at a time on an embedded Chroma directory.

    Chroma's PersistentClient is not safe across processes (its HNSW files would be
    written by two). The server keeps the lock; a command takes it only when no server
    runs, and hands it over when one starts (GuestVectorStore). Anyone else gets a clear
    error naming the holder instead of corrupt files. Taking it again in the process
    that holds it is a no-op.
    """
    global _lock_file
    import fcntl

    with _lock_mutex:
        if _lock_file is not None:
            return
        settings.CHROMA_PATH.mkdir(parents=True, exist_ok=True)
        handle = open(settings.CHROMA_PATH / "memoryweb.lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            socket_path = settings.MEMORYWEB_CONTROL_SOCKET or "off (MEMORYWEB_CONTROL_SOCKET)"
            raise EmbeddedStoreBusy(
                f"the embedded vector store at {settings.CHROMA_PATH} is in use by another "
                f"process ({holder}). A running server shares it with commands through its "
                f"admin socket ({socket_path}); two commands at once, or a server whose socket "
                "this command cannot reach, cannot share it: wait for the other to finish, "
                "or run a Chroma server and set CHROMA_URL.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{_process_label()}, pid {os.getpid()}")
        handle.flush()
        _lock_file = handle


def _unlock_embedded_store() -> None:
    """Let go of the embedded store (a command handing it to the server that started)."""
    global _lock_file
    with _lock_mutex:
        if _lock_file is not None:
            _lock_file.close()  # closing the descriptor releases the flock
            _lock_file = None


def _process_label() -> str:
    """Who holds the store, for the message another process gets."""
    if _owner:
        return "the server"
    args = [os.path.basename(sys.argv[0]), *sys.argv[1:2]] if sys.argv else []
    return " ".join(args) or "a Python process"


class EmbeddedStoreBusy(RuntimeError):
    pass


def become_owner() -> None:
    """This process serves the data directory: it takes the embedded store and keeps it
    (``get_vector_store`` retries until a command that held it lets go); every other
    process works through this one's admin socket. Called before anything here opens
    the store (apps/server/control.py)."""
    global _owner, _store
    with _store_lock:
        _owner = True
        if _store is not None and not isinstance(_store, VectorStore):
            _store = None  # a guest's view, made before this process became the server


def get_vector_store() -> VectorStore:
    """The process-wide vector store (one Chroma client per process).

    Scaled (CHROMA_URL) and in the server: the Chroma client itself. In any other process
    with the embedded Chroma (a management command): a GuestVectorStore, which works
    through the running server, or on the directory itself when no server runs. With no
    admin socket configured (MEMORYWEB_CONTROL_SOCKET empty) there is no server to work
    through, whichever process this is: the Chroma client itself, behind the lock (a
    guest's view would serialise every call for nothing, and watch for a server forever).
    """
    global _store
    if _store is None:
        with _store_lock:
            if _store is None:
                if settings.CHROMA_URL or _owner or not settings.MEMORYWEB_CONTROL_SOCKET:
                    from apps.memories.tiered_store import open_store

                    _store = open_store(make_client())
                else:
                    from apps.memories.guest_store import GuestVectorStore

                    _store = GuestVectorStore()
    return _store
