"""Small namespaces' vectors outside Chroma: one SQLite file, searched by brute force.

Why: the embedded Chroma keeps one HNSW index per collection and loads it on first use;
with many namespaces a server's recall in a namespace not used lately pays that load
(measured at 500 namespaces: the vector stage 7.9 vs 1.7 ms p50, 70 % of it Chroma's
load), and Chroma's cache holds only so many collections. A namespace's 100 vectors read
from SQLite and scored with numpy cost ~0.15 ms (docs/performance.md, "Many namespaces:
the layouts measured"); a shared collection with a namespace filter grows with every
namespace (83 ms at 100,000 records) and was ruled out.

So a collection (one per namespace, named as Chroma's would be) starts here and moves to
Chroma once it holds more than ``MEMORYWEB_SMALL_INDEX_LIMIT`` vectors
(apps/memories/tiered_store.py decides; this module only stores and searches). Same
contract as Chroma's collection: ids, float32 vectors, scalar filter fields searched by
Chroma's ``where`` (where_match.py), cosine similarity. Unlike HNSW the search is exact.

Like Chroma it is derived data (SQL is the truth; reindex rebuilds it), lives in
``CHROMA_PATH`` (not in backups), and is written by the one process that owns the
embedded store. Erasure: ``secure_delete`` zeroes a deleted row's bytes in the file and
:meth:`SmallIndex.checkpoint` empties the write-ahead log (erasure's compact step).

Reads keep each collection's decoded rows in memory (bounded by :data:`CACHE_VECTORS`);
this process is the only writer, so a write drops its collection's entry and the next
read loads it again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from apps.memories.chroma_files import SMALL_INDEX_DB
from apps.memories.where_match import compile_where

FILE_NAME = SMALL_INDEX_DB
#: Decoded vectors kept in memory across all collections (384 floats: ~1.5 kB each, so
#: ~30 MB; 200 namespaces of 100). One not kept costs a read of the file: ~0.2 ms for 100
#: vectors, ~1.5 ms for 1,000 (bench/small_index.py).
CACHE_VECTORS = 20_000
#: 16 kB pages: a row (a 1,536-byte vector, its id and fields) is about a tenth of one, and
#: a collection's rows, clustered by the primary key, read in half the time they take
#: with 4 kB pages (1,000 rows: 0.9 vs 1.8 ms). Set when the file is made.
PAGE_SIZE = 16384
_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vectors (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    vector BLOB NOT NULL,
    metadata TEXT NOT NULL,
    PRIMARY KEY (collection, id)
) WITHOUT ROWID;
"""


@dataclass(eq=False)
class _Loaded:
    """One collection's rows in id order, decoded: ids, vectors and unit vectors (row per
    id), and the filter fields, parsed from their JSON at the first read that needs them
    (a query without a filter does not: parsing was a third of a cold load)."""

    ids: list[str]
    unit: np.ndarray
    vectors: np.ndarray
    raw: list[str]
    _parsed: list[dict[str, Any]] | None = None
    _positions: dict[str, int] | None = None

    @property
    def metadatas(self) -> list[dict[str, Any]]:
        if self._parsed is None:  # two threads may both parse: the same result
            self._parsed = [json.loads(meta) for meta in self.raw]
        return self._parsed

    def rows_of(self, ids: Sequence[Any]) -> list[tuple[str, int]]:
        """``(id, row)`` for each of ``ids`` held (the id-to-row map made once per load:
        recall asks for its candidates' vectors on every request)."""
        if self._positions is None:
            self._positions = {item: row for row, item in enumerate(self.ids)}
        found = ((str(i), self._positions.get(str(i))) for i in ids)
        return [(item, row) for item, row in found if row is not None]

    def ranked(self, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every row, most similar to ``vector`` first (equal scores in id order, as
        Chroma's callers sort them: the rows are in id order and the sort is stable), and
        the cosine similarities by row."""
        norm = float(np.linalg.norm(vector)) or 1.0
        # einsum, not ``@``: OpenBLAS runs a product of 2,000 rows on threads that spin
        # while the other core is busy (measured: 0.1 ms alone, 2 ms beside a test run);
        # einsum's own loop costs the same alone and never waits for a thread.
        scores = np.einsum("ij,j->i", self.unit, np.asarray(vector, dtype=np.float32) / norm)
        return np.argsort(-scores, kind="stable"), scores


def _encode(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


class SmallIndex:
    """Collections of vectors in one SQLite file (``path / FILE_NAME``)."""

    def __init__(self, path: Path) -> None:
        self.file = Path(path) / FILE_NAME
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.file, check_same_thread=False, isolation_level=None,
                                   timeout=60)
        for pragma in (f"page_size={PAGE_SIZE}", "journal_mode=WAL", "secure_delete=ON",
                       "synchronous=NORMAL"):  # page_size first: WAL fixes it
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()
        self._cache: OrderedDict[str, _Loaded] = OrderedDict()
        self._cached = 0
        self._names: set[str] = {name for (name,) in self._db.execute(
            "SELECT name FROM collections")}

    # --- collections --------------------------------------------------------------------

    def holds(self, name: str) -> bool:
        """Whether the collection lives here (created and not moved out or dropped)."""
        return name in self._names

    def names(self) -> set[str]:
        with self._lock:
            return set(self._names)

    def create(self, name: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO collections (name) VALUES (?)", (name,))
            self._names.add(name)

    def drop(self, name: str) -> None:
        """The collection and every row of it gone (bytes zeroed: ``secure_delete``; the
        log emptied)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM vectors WHERE collection = ?", (name,))
                self._db.execute("DELETE FROM collections WHERE name = ?", (name,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._names.discard(name)
            self._forget(name)
            self.checkpoint()  # a dropped namespace's rows out of the write-ahead log too

    def checkpoint(self) -> None:
        """Empty the write-ahead log into the file and truncate it: after this, deleted
        rows are nowhere in the files (erasure's last step, as for the main database)."""
        with self._lock:
            busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:  # a reader (a command's read-only look) kept it: the log still holds rows
            raise RuntimeError(f"{self.file.name}: its write-ahead log could not be emptied "
                               "(a reader held it); retry")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- writes -------------------------------------------------------------------------

    def upsert(self, name: str, ids: Sequence[str], embeddings: np.ndarray,
               metadatas: Sequence[Mapping[str, Any]]) -> None:
        """Store each id's vector and filter fields, replacing what it had (all of it: a
        key the new fields lack is gone, as the Chroma side achieves by clearing it)."""
        vectors = np.asarray(embeddings, dtype=np.float32).reshape(len(ids), -1)
        rows = [(name, str(i), _encode(v), json.dumps(dict(m or {})))
                for i, v, m in zip(ids, vectors, metadatas, strict=True)]
        with self._lock:
            stored = self._db.execute("SELECT length(vector) FROM vectors WHERE collection = ? "
                                      "LIMIT 1", (name,)).fetchone()
            if stored is not None and stored[0] != vectors.shape[1] * 4:
                # As Chroma refuses it: one width per collection (another model: reindex).
                raise ValueError(f"collection {name} holds vectors of {stored[0] // 4} "
                                 f"dimensions, not {vectors.shape[1]}")
            self._write("INSERT OR REPLACE INTO vectors (collection, id, vector, metadata) "
                        "VALUES (?, ?, ?, ?)", rows, name)

    def update_metadata(self, name: str, ids: Sequence[str],
                        metadatas: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Replace the filter fields of the ids stored; their vectors, by id."""
        with self._lock:
            vectors = self.embeddings(name, ids)
            rows = [(json.dumps(dict(m or {})), name, str(i))
                    for i, m in zip(ids, metadatas, strict=True) if str(i) in vectors]
            self._write("UPDATE vectors SET metadata = ? WHERE collection = ? AND id = ?",
                        rows, name)
        return vectors

    def delete(self, name: str, ids: Sequence[str]) -> None:
        with self._lock:
            self._write("DELETE FROM vectors WHERE collection = ? AND id = ?",
                        [(name, str(i)) for i in ids], name)

    def _write(self, statement: str, rows: list[tuple], name: str) -> None:
        if not rows:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(statement, rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        finally:
            self._forget(name)

    # --- reads --------------------------------------------------------------------------

    def count(self, name: str) -> int:
        with self._lock:
            if (loaded := self._cache.get(name)) is not None:
                return len(loaded.ids)
            (found,) = self._db.execute("SELECT count(*) FROM vectors WHERE collection = ?",
                                        (name,)).fetchone()
            return int(found)

    def query(self, name: str, embedding: np.ndarray, n: int,
              where: Mapping[str, Any] | None) -> list[tuple[str, float]]:
        """The ``n`` ids most similar to ``embedding`` among those ``where`` selects, as
        ``(id, cosine similarity)``, best first (exact)."""
        match = compile_where(where)
        loaded = self._load(name)
        if not loaded.ids or n <= 0:
            return []
        order, scores = loaded.ranked(embedding)
        if match is None:
            picked = order[:n]
        else:  # the filter asked in rank order, until n pass: most filters pass early
            picked = []
            for row in order:
                if match(loaded.metadatas[row]):
                    picked.append(row)
                    if len(picked) == n:
                        break
        return [(loaded.ids[row], float(scores[row])) for row in picked]

    def nearest(self, name: str, embeddings: np.ndarray, excluded_kinds: Iterable[str],
                within: float | None) -> list[tuple[str, float] | None]:
        """For each row of ``embeddings``: the most similar id whose ``kind`` is not
        excluded, as ``(id, similarity)``, or None (none, or none at least ``within``)."""
        loaded = self._load(name)
        queries = np.asarray(embeddings, dtype=np.float32)
        if not loaded.ids:
            return [None] * len(queries)
        excluded = set(excluded_kinds)
        found: list[tuple[str, float] | None] = []
        for vector in queries.reshape(len(queries), -1):
            order, scores = loaded.ranked(vector)
            best = next((row for row in order
                         if loaded.metadatas[row].get("kind") not in excluded), None)
            near = best is not None and (within is None or scores[best] >= within - 1e-6)
            found.append((loaded.ids[best], float(scores[best])) if near else None)
        return found

    def embeddings(self, name: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        loaded = self._load(name)
        return {item: loaded.vectors[row].copy() for item, row in loaded.rows_of(ids)}

    def metadatas(self, name: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        loaded = self._load(name)
        return {item: dict(loaded.metadatas[row]) for item, row in loaded.rows_of(ids)}

    def ids_where(self, name: str, where: Mapping[str, Any] | None) -> list[str]:
        match = compile_where(where)
        loaded = self._load(name)
        return [i for i, meta in zip(loaded.ids, loaded.metadatas, strict=True)
                if match is None or match(meta)]

    def ids_page(self, name: str, offset: int, limit: int) -> list[str]:
        with self._lock:
            return [i for (i,) in self._db.execute(
                "SELECT id FROM vectors WHERE collection = ? ORDER BY id LIMIT ? OFFSET ?",
                (name, limit, offset))]

    def rows(self, name: str) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
        """Every id with its vector and filter fields (a move to Chroma)."""
        loaded = self._load(name)
        return list(loaded.ids), loaded.vectors.copy(), [dict(m) for m in loaded.metadatas]

    def _load(self, name: str) -> _Loaded:
        with self._lock:
            if (loaded := self._cache.get(name)) is not None:
                self._cache.move_to_end(name)
                return loaded
            rows = self._db.execute("SELECT id, vector, metadata FROM vectors WHERE "
                                    "collection = ? ORDER BY id", (name,)).fetchall()
            ids = [row[0] for row in rows]
            blobs = [row[1] for row in rows]
            width = len(blobs[0]) // 4 if blobs else 0
            # Read-only over the joined bytes (no copy): readers copy what they hand out.
            vectors = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(ids), width)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            # The model's vectors are unit length already: no second copy of them.
            unit = vectors if np.allclose(norms, 1.0, atol=1e-5) else \
                vectors / np.where(norms == 0, 1.0, norms)
            loaded = _Loaded(ids, unit, vectors, [row[2] for row in rows])
            if name not in self._names:  # a read of a collection that is not here: not kept
                return loaded
            self._cache[name] = loaded
            self._cached += len(ids)
            while self._cached > CACHE_VECTORS and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cached -= len(old.ids)
            return loaded

    def _forget(self, name: str) -> None:
        if (old := self._cache.pop(name, None)) is not None:
            self._cached -= len(old.ids)
