"""The embedded vector store as a process other than the server sees it (a command).

Chroma's embedded PersistentClient belongs to one process at a time (vectorstore.py's
lock), and that process is the server whenever one runs. A command therefore works
through the server's admin socket when it can reach one (apps/server/control.py), and opens
the directory itself only when no server runs. If a server starts while a command holds
the directory, the command hands it over between two operations (a watcher thread
notices the server's socket, so an idle command, such as ``manage.py mcp`` waiting for
its agent, lets go too) and carries on through the server. If the server stops, the
next operation opens the directory again. The server never waits longer than one
Chroma operation of the command, and a command never takes the store from a server.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from apps.memories.tiered_store import open_store
from apps.memories.vectorstore import (
    EmbeddedStoreBusy,
    VectorStore,
    _unlock_embedded_store,
    make_client,
)

log = logging.getLogger(__name__)

#: How often an idle command looks for a server that wants the store.
WATCH_SECONDS = 0.5
#: Operations retried after the server went away mid-call (they are idempotent).
RETRIES = 3


class GuestVectorStore:
    """VectorStore's interface: through the server, else the embedded directory itself."""

    def __init__(self) -> None:
        from apps.memories.remote_store import RemoteVectorStore

        self._remote = RemoteVectorStore()
        self._local: VectorStore | None = None
        # Held by an operation on the directory, and by the hand-over: the directory is
        # never closed under a running operation.
        self._gate = threading.Lock()
        self._watcher: threading.Thread | None = None

    # --- the two ways --------------------------------------------------------------

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        from apps.ops.control_client import ServerGone

        for _attempt in range(RETRIES):
            if self._remote.available():
                self._hand_over()
                try:
                    return getattr(self._remote, name)(*args, **kwargs)
                except ServerGone:
                    log.warning("the server stopped during a vector-store call; retrying")
                    continue
            with self._gate:
                if self._remote.reachable():  # a server came up meanwhile: through it
                    continue
                return getattr(self._open_local(), name)(*args, **kwargs)
        raise EmbeddedStoreBusy("the server stopped answering on its admin socket during the "
                                "operation; run the command again.")

    def _open_local(self) -> VectorStore:
        """The directory itself (caller holds the gate); EmbeddedStoreBusy if it is held."""
        if self._local is None:
            self._local = open_store(make_client())
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name="vector-store-guest",
                                                 daemon=True)
                self._watcher.start()
        return self._local

    def _hand_over(self) -> None:
        """Close the directory and let go of its lock, once no operation runs on it."""
        if self._local is None:
            return
        with self._gate:
            if self._local is None:
                return
            local, self._local = self._local, None
            try:
                local.close()  # Chroma (and the small index) close their files
            finally:
                _unlock_embedded_store()
            log.info("a server started: the embedded vector store is handed to it")

    def _watch(self) -> None:
        """Hand the store over as soon as a server answers, even while this process idles."""
        pause = threading.Event()
        while not pause.wait(WATCH_SECONDS):
            if self._local is not None and self._remote.reachable():
                try:
                    self._hand_over()
                except Exception:  # report, keep watching: the next operation retries
                    log.exception("handing the embedded vector store to the server failed")

    # --- VectorStore's interface ---------------------------------------------------

    def collection_name(self, namespace) -> str:
        from django.conf import settings

        return settings.CHROMA_COLLECTION_PREFIX + namespace.collection

    def upsert(self, namespace, ids, embeddings, metadatas, *, fresh: bool = False) -> None:
        if ids:
            self._call("upsert", namespace, ids, embeddings, metadatas, fresh=fresh)

    def update_metadata(self, namespace, ids, metadatas):
        return self._call("update_metadata", namespace, ids, metadatas) if ids else {}

    def delete(self, namespace, ids) -> None:
        if ids:
            self._call("delete", namespace, ids)

    def query(self, namespace, embedding, n: int, where: dict | None):
        return self._call("query", namespace, embedding, n, where)

    def nearest(self, namespace, embeddings, within=None):
        return self._call("nearest", namespace, embeddings, within)

    def embeddings(self, namespace, ids):
        return self._call("embeddings", namespace, ids) if ids else {}

    def count(self, namespace) -> int:
        return self._call("count", namespace)

    def context_holders(self, namespace, context_ids) -> list[str]:
        return self._call("context_holders", namespace, context_ids) if context_ids else []

    def all_ids(self, namespace, page: int = 5000) -> set[str]:
        return self._call("all_ids", namespace, page)

    def drop_collection(self, name: str) -> None:
        self._call("drop_collection", name)

    def compact(self, namespace) -> bool:
        """Erasure's rewrite of the namespace's collection (VectorStore.compact), on the
        directory itself, or by the server that owns it (``vector.compact``)."""
        return self._call("compact", namespace)

    def forget_cached(self, namespace) -> None:
        from apps.ops.control_client import ServerGone

        with self._gate:
            if self._local is not None:
                self._local.forget_cached(namespace)
                return
        if self._remote.available():
            try:
                self._remote.forget_cached(namespace)
            except ServerGone:
                pass  # a server that stopped has no cache left

    def heartbeat(self) -> None:
        self._call("heartbeat")

    def __getattr__(self, name: str) -> Any:
        """Anything else (the Chroma ``client``, ``collection``) exists only on the
        directory itself: for tests and tools in a process with no server running."""
        if name.startswith("__") or name in {"_remote", "_gate", "_local", "_watcher"}:
            raise AttributeError(name)  # not set yet (copying, or __init__ failed)
        if self._remote.reachable():
            raise AttributeError(f"{name} is not available through the server's admin socket")
        with self._gate:
            return getattr(self._open_local(), name)
