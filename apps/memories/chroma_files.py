"""The embedded Chroma's files: what ``delete`` leaves on disk, and how erasure gets it out.

Measured with chromadb 1.5.9 (docs/privacy.md, "What erasure reaches on disk in the vector
store"): the PersistentClient keeps a deleted vector in its HNSW files (hnswlib marks it
deleted), in its write-ahead log (``embeddings_queue`` in ``chroma.sqlite3``, with the
filter metadata) until the HNSW segment next persists, and in the SQLite pages its rows
freed; ``delete_collection`` leaves the collection's segment directory behind. The
vector store (vectorstore.py) compacts and scrubs with the helpers here; the store
registry's ``vector_files`` checks with :func:`disk_residue`. No chromadb import: the
files are read with sqlite3, read-only.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

#: The name a collection is rebuilt under by ``compact`` before it takes the old name.
REWRITE_SUFFIX = ".rewrite"
#: Vectors per page when ``compact`` copies a collection.
COPY_PAGE = 1000
#: Chroma's own database file inside CHROMA_PATH (its sysdb, log and metadata segments).
CHROMA_DB = "chroma.sqlite3"
_SEGMENT_DIR = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Gate:
    """Any number of operations at once, or one that needs the store alone (a rewrite of
    Chroma's files: ``compact``, ``drop_collection``). A thread already inside may enter
    again (a read that follows a reindex swap); a waiting rewrite keeps newcomers out."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._alone = False
        self._waiting = 0
        self._mine = threading.local()

    @contextmanager
    def shared(self) -> Iterator[None]:
        depth = getattr(self._mine, "depth", 0)
        with self._cond:
            while self._alone or (self._waiting and not depth):
                self._cond.wait()
            self._shared += 1
        self._mine.depth = depth + 1
        try:
            yield
        finally:
            self._mine.depth = depth
            with self._cond:
                self._shared -= 1
                if not self._shared:
                    self._cond.notify_all()

    @contextmanager
    def alone(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                while self._alone or self._shared:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._alone = True
        try:
            yield
        finally:
            with self._cond:
                self._alone = False
                self._cond.notify_all()


def persist_path(client) -> Path | None:
    """The directory of an embedded (persistent) Chroma client; None for a server's."""
    try:
        chroma_settings = client.get_settings()
    except Exception:  # not a chromadb client (a test's stand-in)
        return None
    if not getattr(chroma_settings, "is_persistent", False) or \
            chroma_settings.chroma_api_impl != "chromadb.api.rust.RustBindingsAPI":
        return None
    return Path(chroma_settings.persist_directory)


def copy_collection(source, target) -> None:
    """Every id of ``source`` with its vector and filter fields, into ``target``."""
    offset = 0
    while True:
        page = source.get(include=["embeddings", "metadatas"], limit=COPY_PAGE, offset=offset)
        ids = page["ids"]
        if not ids:
            return
        metadatas = page["metadatas"] or [None] * len(ids)
        with_meta = [k for k, meta in enumerate(metadatas) if meta]
        without = [k for k, meta in enumerate(metadatas) if not meta]
        embeddings = np.asarray(page["embeddings"], dtype=np.float32)
        if with_meta:
            target.add(ids=[ids[k] for k in with_meta], embeddings=embeddings[with_meta],
                       metadatas=[metadatas[k] for k in with_meta])
        if without:
            target.add(ids=[ids[k] for k in without], embeddings=embeddings[without])
        offset += len(ids)


# --- Chroma's files (embedded) ----------------------------------------------------------

def read_sysdb(path: Path, query: str, params: Sequence[Any] = ()) -> list[tuple]:
    """Rows of ``chroma.sqlite3``, read-only (it may be open in this or another process)."""
    database = path / CHROMA_DB
    if not database.exists():
        return []
    connection = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        return connection.execute(query, tuple(params)).fetchall()
    finally:
        connection.close()


def orphan_segments(path: Path | None = None) -> list[Path]:
    """Segment directories under the embedded Chroma's directory (named by a segment's
    UUID) whose segment Chroma's sysdb no longer has: a dropped collection's HNSW files.

    The directories are listed before the sysdb is read, so a collection created
    meanwhile (its segment rows exist before Chroma writes its directory) is never taken
    for an orphan. Only direct, real (not symlinked) subdirectories are considered."""
    root = Path(path or settings.CHROMA_PATH)
    if not root.is_dir():
        return []
    candidates = [entry for entry in root.iterdir()
                  if _SEGMENT_DIR.match(entry.name) and entry.is_dir() and not entry.is_symlink()]
    if not candidates:
        return []
    known = {row[0] for row in read_sysdb(root, "SELECT id FROM segments")}
    return [entry for entry in candidates if entry.name not in known]


def remove_dir(directory: Path) -> None:
    """Remove a segment directory; one another process removed meanwhile is fine."""
    try:
        shutil.rmtree(directory)
    except FileNotFoundError:
        pass


def drop_orphan_segments() -> list[str]:
    """Remove orphan segment directories (of collections dropped before MemoryWeb removed
    them itself); what was removed, in words. Embedded only; safe beside a running
    server (an orphan is nobody's). For the registry's ``drop_orphans`` (``reindex``)."""
    if settings.CHROMA_URL:
        return []
    dropped = []
    for directory in orphan_segments():
        remove_dir(directory)
        dropped.append(f"the vector files of a dropped collection ({directory.name})")
    return dropped


def disk_residue(ids: Sequence[Any]) -> int | None:
    """What the embedded Chroma's files still hold of erased memories: rows of its log
    (``embeddings_queue``: the vector and the filter fields) and of its metadata segments
    (``embeddings``) that name one of ``ids``, plus segment directories of dropped
    collections (HNSW files nobody reads). None with a Chroma server (CHROMA_URL): its
    files are not ours to read. Reads ``chroma.sqlite3`` read-only: cheap, and safe from
    a command beside the server."""
    if settings.CHROMA_URL:
        return None
    root = Path(settings.CHROMA_PATH)
    held = len(orphan_segments(root))
    wanted = [str(i) for i in ids]
    for start in range(0, len(wanted), 500):
        part = wanted[start:start + 500]
        marks = ",".join("?" * len(part))
        for table, column in (("embeddings_queue", "id"), ("embeddings", "embedding_id")):
            rows = read_sysdb(root, f"SELECT count(*) FROM {table} WHERE {column} IN ({marks})",
                               part)
            held += rows[0][0] if rows else 0
    return held


def compact_namespace(namespace, ids: Sequence[Any] = ()) -> None:
    """Erasure's ``vector_files`` step: rewrite the namespace's collection so Chroma's
    files hold only its live vectors (VectorStore.compact; time proportional to the
    namespace). ``ids`` (the erased ones) are gone from it already."""
    from apps.memories.vectorstore import get_vector_store

    get_vector_store().compact(namespace)
