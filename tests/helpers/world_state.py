"""Test helpers for a world of SQL rows and Chroma vectors shared by a module's tests.

tests/tenancy/test_isolation_matrix.py builds its world once per module inside a
transaction that is never committed: SQL goes back by itself, what is not SQL does not.
These put a namespace's vector collection (Chroma's, or the embedded store's small index,
apps/memories/small_index.py) back as it was built (cells delete, replace and drop
vectors) and say what a module left behind (rows per table, tables, SQLite's sequences,
collections).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection

from apps.memories.embeddings import MemoryWebEmbeddingFunction
from apps.tenancy.models import Namespace


@dataclass(frozen=True)
class SharedWorld:
    """The module's world (``world``'s value), and what puts back what is not SQL."""

    world: dict
    keystore: Path  # the key store the world was built with (copied into each test's)
    namespaces: list[Namespace]
    vectors: dict[str, dict[str, tuple[np.ndarray, dict]] | None]  # None: no collection


def database_state() -> dict[str, int]:
    """Rows per table (every table, the keyword index's too) and SQLite's sequences."""
    state: dict[str, int] = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")
            state[table] = cursor.fetchone()[0]
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name, seq FROM sqlite_sequence")
            state.update({f"sqlite_sequence:{name}": seq for name, seq in cursor.fetchall()})
    return state


def collection_names(store) -> set[str]:
    """Chroma's collections and the small index's (embedded)."""
    small = store.small.names() if hasattr(store, "small") else set()
    return {getattr(found, "name", found) for found in store.client.list_collections()} | small


def vectors(store, namespaces) -> dict[str, dict[str, tuple[np.ndarray, dict]] | None]:
    """Each namespace's collection as it is: id -> (embedding, metadata); None if none."""
    from chromadb.errors import NotFoundError

    found: dict[str, dict[str, tuple[np.ndarray, dict]] | None] = {}
    for namespace in namespaces:
        name = store.collection_name(namespace)
        if hasattr(store, "small") and store.small.holds(name):
            ids, embeddings, metadatas = store.small.rows(name)
            found[name] = {pk: (vector, metadata)
                           for pk, vector, metadata in zip(ids, embeddings, metadatas, strict=True)}
            continue
        try:
            collection = store.client.get_collection(
                name=name, embedding_function=MemoryWebEmbeddingFunction())
        except NotFoundError:
            found[name] = None
            continue
        rows = collection.get(include=["embeddings", "metadatas"])
        found[name] = {
            pk: (np.asarray(vector, np.float32), dict(metadata or {}))
            for pk, vector, metadata in zip(rows["ids"], rows["embeddings"], rows["metadatas"],
                                            strict=True)}
    return found


def _same(have: tuple[np.ndarray, dict], want: tuple[np.ndarray, dict]) -> bool:
    """One vector as the world has it: the same metadata and embedding (to float32's
    precision: a round trip through Chroma may move the last digit)."""
    return have[1] == want[1] and np.allclose(have[0], want[0], rtol=0, atol=1e-6)


def restore_vectors(store, shared: SharedWorld) -> None:
    """Put the world's collections back as they were built: cells' Chroma writes (stores,
    replaced content, metadata, deletes, a dropped collection) are not rolled back with
    their SQL. A changed vector is deleted and written again through the store (which
    puts it on whichever side holds the namespace; a fresh write after the delete keeps
    no metadata key the world's vector lacks)."""
    now = vectors(store, shared.namespaces)
    for namespace in shared.namespaces:
        name = store.collection_name(namespace)
        want, have = shared.vectors[name], now[name]
        if want is None:
            if have is not None:
                store.drop_collection(name)
            continue
        stale = sorted(pk for pk in have or () if pk not in want or not _same(have[pk], want[pk]))
        missing = sorted(pk for pk in want if pk not in (have or ()) or pk in stale)
        if have is not None and not stale and not missing:
            continue
        if stale:
            store.delete(namespace, stale)
        if missing:  # re-creates the collection if a cell dropped it
            store.upsert(namespace, missing, np.stack([want[pk][0] for pk in missing]),
                         [want[pk][1] for pk in missing], fresh=True)


def leftovers(before: dict[str, int], after: dict[str, int], chroma_before: set[str],
               chroma_after: set[str], store, namespaces) -> list[str]:
    """What differs from the database and vector store as the module found them."""
    left = [f"{name}: {before.get(name)} -> {after.get(name)}"
            for name in sorted(before.keys() | after.keys()) if before.get(name) != after.get(name)]
    if settings.CHROMA_URL:  # a server other workers use too: only the world's collections
        chroma_after = chroma_after & {store.collection_name(namespace) for namespace in namespaces}
        chroma_before = set()
    left += [f"Chroma collection {name}" for name in sorted(chroma_after - chroma_before)]
    return left
