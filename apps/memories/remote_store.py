"""The vector store run by the embedded server, as a command beside it reaches it.

VectorStore's operations sent over the server's admin socket (apps/ops/control_client.py
carries them; apps/server/control.py runs them on the store it owns). Vectors travel as
base64 float32. GuestVectorStore (guest_store.py) decides when to use this and when to
open the directory itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from apps.memories.vectorstore import EmbeddedStoreBusy, VectorHit
from apps.ops.control_client import (
    ControlClient,
    ControlError,
    pack_array,
    pack_namespace,
    unpack_array,
)


class RemoteVectorStore:
    """VectorStore's operations, run by the server that owns the embedded Chroma."""

    def __init__(self) -> None:
        self.client = ControlClient()

    def available(self) -> bool:
        return self.client.available()

    def reachable(self) -> bool:
        return self.client.reachable()

    def _call(self, op: str, **args: Any) -> Any:
        try:
            return self.client.call(f"vector.{op}", args)
        except ControlError as exc:
            if exc.code != "busy":
                raise
            raise EmbeddedStoreBusy(exc.message) from None

    def upsert(self, namespace, ids: Sequence[str], embeddings, metadatas: Sequence[Mapping],
               *, fresh: bool = False) -> None:
        self._call("upsert", namespace=pack_namespace(namespace), ids=[str(i) for i in ids],
                   embeddings=pack_array(embeddings), metadatas=[dict(m) for m in metadatas],
                   fresh=bool(fresh))

    def update_metadata(self, namespace, ids: Sequence[str],
                        metadatas: Sequence[Mapping]) -> dict[str, np.ndarray]:
        found = self._call("update_metadata", namespace=pack_namespace(namespace),
                           ids=[str(i) for i in ids], metadatas=[dict(m) for m in metadatas])
        vectors = unpack_array(found["vectors"]) if found["ids"] else []
        return {i: np.asarray(v, dtype=np.float32) for i, v in zip(found["ids"], vectors,
                                                                 strict=True)}

    def delete(self, namespace, ids: Sequence[str]) -> None:
        self._call("delete", namespace=pack_namespace(namespace), ids=[str(i) for i in ids])

    def query(self, namespace, embedding, n: int, where: dict | None) -> list[VectorHit]:
        rows = self._call("query", namespace=pack_namespace(namespace),
                          embedding=pack_array(np.asarray(embedding).reshape(-1)), n=int(n),
                          where=where or None)
        return [VectorHit(str(i), float(s)) for i, s in rows]

    def nearest(self, namespace, embeddings, within=None) -> list[VectorHit | None]:
        if not len(embeddings):
            return []
        rows = self._call("nearest", namespace=pack_namespace(namespace),
                          embeddings=pack_array(np.asarray(embeddings).reshape(len(embeddings), -1)),
                          within=within)
        return [VectorHit(str(row[0]), float(row[1])) if row else None for row in rows]

    def embeddings(self, namespace, ids: Sequence[str]) -> dict[str, np.ndarray]:
        found = self._call("embeddings", namespace=pack_namespace(namespace),
                           ids=[str(i) for i in ids])
        vectors = unpack_array(found["vectors"]) if found["ids"] else []
        return {i: np.asarray(v, dtype=np.float32) for i, v in zip(found["ids"], vectors,
                                                                 strict=True)}

    def count(self, namespace) -> int:
        return int(self._call("count", namespace=pack_namespace(namespace)))

    def context_holders(self, namespace, context_ids: Sequence[str]) -> list[str]:
        if not context_ids:
            return []
        return list(self._call("context_holders", namespace=pack_namespace(namespace),
                               context_ids=[str(i) for i in context_ids]))

    def all_ids(self, namespace, page: int = 5000) -> set[str]:
        ids: set[str] = set()
        offset = 0
        while True:
            batch = self._call("ids", namespace=pack_namespace(namespace), offset=offset,
                               limit=page)
            ids.update(batch)
            if len(batch) < page:
                return ids
            offset += page

    def drop_collection(self, name: str) -> None:
        self._call("drop_collection", name=name)

    def compact(self, namespace) -> bool:
        """Erasure's rewrite of the namespace's collection, by the server that owns it."""
        return bool(self._call("compact", namespace=pack_namespace(namespace)))

    def forget_cached(self, namespace) -> None:
        self._call("forget_cached", namespace=pack_namespace(namespace))

    def heartbeat(self) -> None:
        self._call("heartbeat")
