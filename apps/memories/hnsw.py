"""Chroma's HNSW settings for a namespace's collection: cosine space, the search breadth
``MEMORYWEB_VECTOR_SEARCH_EF`` (docs/recall.md, "The vector channel"), and how often the
index goes to disk, by the collection's size (``MEMORYWEB_VECTOR_SYNC_UNTIL``,
apps/memories/chroma_cache.py)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from apps.memories.chroma_cache import sync_threshold


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
    """An opened collection, its ``ef_search`` and ``sync_threshold`` changed to the
    settings' when they differ (a collection keeps the values it was created with; the
    settings, or its size, may have changed since)."""
    current = _current(collection)
    changes: dict[str, Any] = {}
    wanted = settings.MEMORYWEB_VECTOR_SEARCH_EF
    if wanted and current.get("ef_search") != wanted:
        changes["ef_search"] = wanted
    if settings.MEMORYWEB_VECTOR_SYNC_UNTIL:
        sync = sync_threshold(collection.count())
        if current.get("sync_threshold") != sync:
            changes["sync_threshold"] = sync
    if changes:
        collection.modify(configuration={"hnsw": changes})
    return collection


def syncs_every_write(collection) -> bool:
    """Whether the collection was opened (or created) writing its index at every write."""
    return _current(collection).get("sync_threshold") == 1


def grown(collection) -> None:
    """A collection that syncs at every write and has reached the size past which it
    should not: back to Chroma's default. Called after writes to such collections."""
    if sync_threshold(collection.count()) != 1:
        collection.modify(configuration={"hnsw": {"sync_threshold": sync_threshold(10**12)}})
