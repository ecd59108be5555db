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

import logging
import re
import shutil
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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
#: Small namespaces' vectors, beside Chroma's files (apps/memories/small_index.py).
SMALL_INDEX_DB = "small_index.sqlite3"
#: An HNSW segment's files (Chroma's hnswlib): the header, and the vectors with their links.
HNSW_HEADER, HNSW_DATA = "header.bin", "data_level0.bin"
#: The header's start: version (int32), then offsetLevel0, max_elements, cur_element_count,
#: size_data_per_element (size_t each). Only version 1 is read; another is left alone.
_HNSW_HEAD = struct.Struct("<iQQQQ")
_HNSW_VERSION = 1
_ZERO_CHUNK = 1 << 20
logger = logging.getLogger(__name__)
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

    def inside(self) -> bool:
        """Whether this thread is in a shared operation (it must not wait to be alone)."""
        return getattr(self._mine, "depth", 0) > 0

    @contextmanager
    def alone(self) -> Iterator[None]:
        with self.alone_within(None):
            yield

    @contextmanager
    def alone_within(self, seconds: float | None) -> Iterator[bool]:
        """The store alone, waiting at most ``seconds`` (None: as long as it takes);
        yields False, having kept nobody out past that, when it was not had in time."""
        deadline = None if seconds is None else time.monotonic() + seconds
        with self._cond:
            self._waiting += 1
            try:
                while self._alone or self._shared:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self._cond.wait(left)
                got = not (self._alone or self._shared)
            finally:
                self._waiting -= 1
                if not self._waiting:
                    self._cond.notify_all()  # newcomers held back by this wait go on
            if got:
                self._alone = True
        if not got:
            yield False
            return
        try:
            yield True
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
        put_rows(target.add, ids, np.asarray(page["embeddings"], dtype=np.float32),
                 page["metadatas"] or [None] * len(ids))
        offset += len(ids)


def put_rows(write, ids: Sequence[str], embeddings: np.ndarray,
             metadatas: Sequence[Any]) -> None:
    """``write`` (a collection's ``add`` or ``upsert``) the rows in pages of ``COPY_PAGE``:
    Chroma refuses an empty metadata object, so rows without filter fields go apart."""
    for start in range(0, len(ids), COPY_PAGE):
        page = range(start, min(start + COPY_PAGE, len(ids)))
        with_meta = [k for k in page if metadatas[k]]
        without = [k for k in page if not metadatas[k]]
        if with_meta:
            write(ids=[ids[k] for k in with_meta], embeddings=embeddings[with_meta],
                  metadatas=[metadatas[k] for k in with_meta])
        if without:
            write(ids=[ids[k] for k in without], embeddings=embeddings[without])


# --- Chroma's files (embedded) ----------------------------------------------------------

def read_sysdb(path: Path, query: str, params: Sequence[Any] = (),
               database: str = CHROMA_DB) -> list[tuple]:
    """Rows of ``chroma.sqlite3`` (or another file of the store), read-only (it may be
    open in this or another process)."""
    file = path / database
    if not file.exists():
        return []
    connection = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
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
    candidates = _segment_dirs(root)
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


@dataclass(frozen=True)
class HnswLayout:
    """Where an HNSW segment's ``data_level0.bin`` holds elements: slots of
    ``element_size`` bytes, ``count`` in use of ``capacity``; the file holds ``slots`` of
    them. hnswlib writes its whole initial allocation when it creates the file (100 slots
    in Chroma), then only the elements it changes: a resize raises ``capacity`` in the
    header and never grows the file. So a file holds max(initial, written) slots, and
    those past ``count`` (a collection under 100, or one whose capacity grew while few
    elements were written) are malloc'd bytes persisted as they were."""

    capacity: int
    count: int
    element_size: int
    slots: int = 0


def hnsw_layout(directory: Path) -> HnswLayout | None:
    """The layout of a segment directory's HNSW files; None when they are missing or not
    in the format this reads (a header of another version, or sizes that disagree with
    the file): such files are never written to."""
    header, data = directory / HNSW_HEADER, directory / HNSW_DATA
    try:
        head = header.read_bytes()[:_HNSW_HEAD.size]
        size = data.stat().st_size
    except OSError:
        return None
    if len(head) < _HNSW_HEAD.size:
        return None
    version, offset, capacity, count, element_size = _HNSW_HEAD.unpack(head)
    if version != _HNSW_VERSION or offset != 0 or not element_size or count > capacity \
            or size % element_size or not count * element_size <= size <= capacity * element_size:
        return None
    return HnswLayout(capacity=capacity, count=count, element_size=element_size,
                      slots=size // element_size)


def _segment_dirs(root: Path) -> list[Path]:
    return [entry for entry in root.iterdir()
            if _SEGMENT_DIR.match(entry.name) and entry.is_dir() and not entry.is_symlink()]


def _unused(directory: Path) -> tuple[Path, int, int] | None:
    """(data file, first unused byte, its size) of a segment, or None."""
    layout = hnsw_layout(directory)
    if layout is None:
        return None
    return (directory / HNSW_DATA, layout.count * layout.element_size,
            layout.slots * layout.element_size)


def zero_unused_capacity(path: Path | None = None) -> int:
    """Zero the slots past the element count in every HNSW segment's ``data_level0.bin``;
    the bytes that were not zero already. Only with Chroma's engine stopped (the scrub).

    hnswlib allocates an index's capacity with malloc and persists all of it, so those
    slots hold whatever the process's heap held before: measured, the vector of an erased
    memory in a collection created after it (docs/privacy.md). The slots are never read
    (an element is written before the count covers it)."""
    return _sweep_unused(path, zero=True)


def unused_capacity_bytes(path: Path | None = None) -> int:
    """Bytes that are not zero in the unused capacity of the HNSW files (see
    :func:`zero_unused_capacity`); 0 right after a scrub."""
    return _sweep_unused(path, zero=False)


def _sweep_unused(path: Path | None, *, zero: bool) -> int:
    """The non-zero bytes in every segment's unused capacity, zeroed too when ``zero``."""
    root = Path(path or settings.CHROMA_PATH)
    if not root.is_dir():
        return 0
    found = 0
    for directory in _segment_dirs(root):
        unused = _unused(directory)
        if unused is None:
            data = directory / HNSW_DATA
            if data.exists():
                logger.warning("HNSW files in %s are not in a layout this version reads: "
                               "their unused capacity was not %s", directory,
                               "zeroed" if zero else "read")
                if not zero:  # counted whole: a check must not pass on what it cannot read
                    found += data.stat().st_size - data.read_bytes().count(0)
            continue
        data, start, end = unused
        with data.open("r+b" if zero else "rb") as handle:
            handle.seek(start)
            while start < end:
                chunk = handle.read(min(_ZERO_CHUNK, end - start))
                if not chunk:
                    break
                dirty = len(chunk) - chunk.count(0)
                if dirty and zero:
                    handle.seek(start)
                    handle.write(bytes(len(chunk)))
                found += dirty
                start += len(chunk)
    return found


#: glibc's mallopt parameter M_PERTURB, and the byte freed memory is overwritten with.
_M_PERTURB = -6
PERTURB_BYTE = 0x5A
_malloc_scrubbing = False


def scrub_freed_memory() -> bool:
    """Make glibc overwrite every block it frees (and fill every block it hands out) with
    a fixed byte; whether it could (glibc only). Called when the embedded client is made.

    hnswlib allocates an index's capacity with malloc and persists all of it, the slots it
    never wrote included, and loads an index into a fresh allocation the same way. Without
    this those slots hold what the process's heap held before: measured, the vector of an
    erased memory (from the dropped index, or a buffer a read had used) in the file of a
    collection created after the erasure. Costs a memset per allocation and free."""
    global _malloc_scrubbing
    if _malloc_scrubbing:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        _malloc_scrubbing = bool(libc.mallopt(_M_PERTURB, PERTURB_BYTE))
    except (OSError, AttributeError):  # not glibc
        _malloc_scrubbing = False
    if not _malloc_scrubbing:
        logger.warning("freed memory is not overwritten (not glibc?): an HNSW file written "
                       "later may hold freed vectors until an erasure's scrub zeroes it")
    return _malloc_scrubbing


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
        rows = read_sysdb(root, f"SELECT count(*) FROM vectors WHERE id IN ({marks})", part,
                          database=SMALL_INDEX_DB)  # small namespaces' (small_index.py)
        held += rows[0][0] if rows else 0
    return held


def compact_namespace(namespace, ids: Sequence[Any] = ()) -> None:
    """Erasure's ``vector_files`` step: rewrite the namespace's collection so Chroma's
    files hold only its live vectors (VectorStore.compact; time proportional to the
    namespace). ``ids`` (the erased ones) are gone from it already."""
    from apps.memories.vectorstore import get_vector_store

    get_vector_store().compact(namespace)
