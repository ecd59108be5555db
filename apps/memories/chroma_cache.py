"""Guards against Chroma's collection cache: how many collections the embedded engine
holds open, and how often a small collection's index goes to disk.

Chroma's engine (chromadb 1.5.9, its Rust bindings; the server is the same code) keeps
every collection it opens in a cache sized from the process's open-file limit, about
``RLIMIT_NOFILE // 5`` collections, each holding 4 open files and ~2.8 MB. When the
cache is full it evicts one, and an evicted collection comes back wrong in that process
(measured; docs/operations.md, "Many namespaces"): the vectors written since its HNSW
index last went to disk (Chroma writes it every ``sync_threshold`` writes, 1,000 by
default) are missing from its queries and its count, silently; one that never went to
disk fails every query ("Nothing found on disk"). A restart reads the write-ahead log
again and is right. With the usual limit of 1,024 open files that began at about 200
namespaces.

Two guards, each enough on its own where it applies:

- **Embedded** (this process owns Chroma): Chroma never evicts. The store counts the
  collections used since its engine started; before one more would pass
  :func:`open_limit`, it stops and starts the engine with the store alone — what a
  restart does, in ~50 ms: files closed, each collection read again with its log at its
  next use, and the memory it freed given back (``malloc_trim``). That also bounds the
  open files and memory of a server with many namespaces. The limit
  is soft: when the store is busy (a compaction holds it for seconds), the restart waits
  at most :data:`RESTART_WAIT` and the operation goes on, until Chroma's own capacity is
  close; only then does it wait as long as it takes.
- **Small collections** (under ``MEMORYWEB_VECTOR_SYNC_UNTIL`` vectors) write their
  index to disk at every write (``sync_threshold`` 1), so an eviction loses nothing
  (embedded only: see :func:`sync_threshold` for a Chroma server); Chroma then drops their
  log rows, so a collection's first query after a restart no longer replays its log (200
  collections of 100 vectors: 21.9 → 4.9 ms). Larger collections keep Chroma's 1,000: the
  disk write costs about 0.4 ms per 1,000 vectors (41 ms a write at 100,000).

Chroma reads a collection's ``sync_threshold`` when its engine loads it: a change made
by ``modify`` (an existing collection opened under the guard, one that grew past the
size) takes effect at the engine's next start, so the embedded store restarts it at its
next operation (:attr:`OpenCollections.stale`).
"""

from __future__ import annotations

import resource
import threading
from collections.abc import Callable

from django.conf import settings

#: Chroma's own ``sync_threshold`` default, kept by collections past the small size.
CHROMA_SYNC_THRESHOLD = 1000
#: The automatic limit of open collections (``MEMORYWEB_VECTOR_OPEN_COLLECTIONS`` = 0):
#: with ~2.8 MB each, at most ~560 MB of small collections held at once.
DEFAULT_OPEN_COLLECTIONS = 200
#: Seconds a restart under the limit waits for the store before the operation goes on.
RESTART_WAIT = 0.05


def chroma_capacity() -> int:
    """Collections Chroma's cache holds before it evicts: a fifth of the soft open-file
    limit, which it reads when the client is made (measured with chromadb 1.5.9)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1_000_000
    return max(1, soft // 5)


def open_limit() -> int:
    """How many collections the embedded engine may hold before the store restarts it:
    the setting (0: :data:`DEFAULT_OPEN_COLLECTIONS`), never more than four fifths of
    Chroma's capacity, so its cache never fills (and files are left for sockets)."""
    wanted = settings.MEMORYWEB_VECTOR_OPEN_COLLECTIONS or DEFAULT_OPEN_COLLECTIONS
    return max(1, min(wanted, chroma_capacity() * 4 // 5))


def sync_guarded() -> bool:
    """Whether small collections sync at every write: the guard is on
    (``MEMORYWEB_VECTOR_SYNC_UNTIL`` > 0) and the store is embedded. A Chroma server's
    every-write syncs made its SQLite refuse a concurrent client's collection change
    ("database is locked", the scaled test pass with two workers), so there only its
    open-file limit protects."""
    return bool(settings.MEMORYWEB_VECTOR_SYNC_UNTIL) and not settings.CHROMA_URL


def sync_threshold(size: int) -> int | None:
    """The ``sync_threshold`` a collection of ``size`` vectors should have; None (Chroma's
    default) when not :func:`sync_guarded`."""
    if not sync_guarded():
        return None
    return 1 if size < settings.MEMORYWEB_VECTOR_SYNC_UNTIL else CHROMA_SYNC_THRESHOLD


def restart_engine(client, while_stopped: Callable[[], None] | None = None) -> None:
    """Stop and start the embedded engine: its files closed (``while_stopped`` runs then:
    a vacuum of its database), every collection loaded again (with its log) at its next
    use; a failed start is tried once more. Then the memory the stopped engine freed is
    given back to the system (:func:`trim_heap`)."""
    engine = client._server  # chromadb.api.rust.RustBindingsAPI
    try:
        engine.stop()
        if while_stopped is not None:
            while_stopped()
    finally:
        try:
            engine.start()
        except Exception:
            engine.start()
    trim_heap()


def trim_heap() -> bool:
    """Give the heap's free memory back to the system (glibc's ``malloc_trim``); whether
    it could. Without it a stopped engine's memory stayed in the process: bare Chroma,
    1,000 collections of 100 vectors with a restart every 200, RSS after each restart
    157, 633, 623, 433, 643 MB; trimmed, 108-113 MB, and at most ~670 MB before each."""
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):  # not glibc
        return False


def restart_if_due(held: OpenCollections, gate, client, name: str) -> None:
    """Before an operation on ``name``: restart the engine when it holds as many
    collections as it may (and not this one) or a collection's settings changed, with
    the store alone (``gate``, chroma_files.Gate). Put off while the store is busy, up to
    :data:`RESTART_WAIT`, unless Chroma's cache is nearly full; never from inside an
    operation (this thread would wait for itself)."""
    if not (held.stale or held.full_without(name)) or gate.inside():
        return
    wait = None if held.urgent(name) else RESTART_WAIT
    with gate.alone_within(wait) as alone:
        if alone and (held.stale or held.full_without(name)):  # not done meanwhile
            restart_engine(client)  # opened collection handles stay usable
            held.clear()
            held.restarts += 1


class OpenCollections:
    """The collections the embedded engine has opened since it last started."""

    def __init__(self, limit: int, capacity: int | None = None) -> None:
        self.limit = limit
        #: Chroma's own cache size: at it, a restart waits for the store however long.
        self.capacity = capacity or chroma_capacity()
        self._names: set[str] = set()
        self._lock = threading.Lock()
        #: A collection's configuration changed: it applies at the engine's next start.
        self.stale = False
        #: Times the engine was restarted (tests, docs/operations.md's figures).
        self.restarts = 0

    def full_without(self, name: str) -> bool:
        """Whether opening ``name`` would pass the limit."""
        with self._lock:
            return name not in self._names and len(self._names) >= self.limit

    def urgent(self, name: str) -> bool:
        """Whether opening ``name`` would come within a few collections of Chroma's
        cache size, past which it evicts: the restart must not be put off."""
        with self._lock:
            return name not in self._names and len(self._names) >= self.capacity - 4

    def add(self, name: str) -> None:
        with self._lock:
            self._names.add(name)

    def clear(self) -> None:
        """After the engine started again: nothing held, nothing stale."""
        with self._lock:
            self._names.clear()
            self.stale = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._names)
