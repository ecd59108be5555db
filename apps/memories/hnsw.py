"""Chroma's HNSW settings for a namespace's collection: cosine space, the search breadth
``MEMORYWEB_VECTOR_SEARCH_EF`` (docs/recall.md, "The vector channel"), and how often the
index goes to disk, by the collection's size (``MEMORYWEB_VECTOR_SYNC_UNTIL``,
apps/memories/chroma_cache.py)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from apps.memories.chroma_cache import CHROMA_SYNC_THRESHOLD, sync_guarded, sync_threshold


def hnsw_configuration(size: int = 0) -> dict[str, Any]:
    """A new collection's index, for ``size`` vectors to come (a copy's source size):
    cosine, ``MEMORYWEB_VECTOR_SEARCH_EF`` when set, the size's ``sync_threshold``."""
    hnsw: dict[str, Any] = {"space": "cosine"}
    if settings.MEMORYWEB_VECTOR_SEARCH_EF:
        hnsw["ef_search"] = settings.MEMORYWEB_VECTOR_SEARCH_EF
    if (sync := sync_threshold(size)) is not None:
        hnsw["sync_threshold"] = sync
    return {"hnsw": hnsw}


def _current(collection) -> dict[str, Any]:
    return (getattr(collection, "configuration", None) or {}).get("hnsw") or {}


def searching_as_set(collection):
    """An opened collection, its ``ef_search`` changed to the setting's when they differ
    (a collection keeps the value it was created with; the setting may have changed)."""
    wanted = settings.MEMORYWEB_VECTOR_SEARCH_EF
    if wanted and _current(collection).get("ef_search") != wanted:
        collection.modify(configuration={"hnsw": {"ef_search": wanted}})
    return collection


def sync_as_set(collection) -> bool:
    """Give an opened collection the ``sync_threshold`` its size calls for (the guard
    off: Chroma's default). True when it was changed: the change applies when Chroma next
    loads the collection (chroma_cache.py)."""
    current = _current(collection).get("sync_threshold")
    if not sync_guarded():  # Chroma's default, also for collections the guard set to 1
        if current != 1:
            return False  # without asking the store for the collection's size
        wanted = CHROMA_SYNC_THRESHOLD
    else:
        wanted = sync_threshold(collection.count())
    if current == wanted:
        return False
    collection.modify(configuration={"hnsw": {"sync_threshold": wanted}})
    return True


def syncs_every_write(collection) -> bool:
    """Whether the collection is set to write its index at every write."""
    return _current(collection).get("sync_threshold") == 1
