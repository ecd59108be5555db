"""Chroma's HNSW settings for a namespace's collection: cosine space, and the search
breadth ``MEMORYWEB_VECTOR_SEARCH_EF`` (docs/recall.md, "The vector channel")."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def hnsw_configuration() -> dict[str, Any]:
    """A new collection's index: cosine, and ``MEMORYWEB_VECTOR_SEARCH_EF`` when set."""
    hnsw: dict[str, Any] = {"space": "cosine"}
    if settings.MEMORYWEB_VECTOR_SEARCH_EF:
        hnsw["ef_search"] = settings.MEMORYWEB_VECTOR_SEARCH_EF
    return {"hnsw": hnsw}


def searching_as_set(collection):
    """An opened collection, its ``ef_search`` changed to the setting's when they differ (a
    collection keeps the value it was created with; the setting may have changed since)."""
    wanted = settings.MEMORYWEB_VECTOR_SEARCH_EF
    if wanted:
        current = ((getattr(collection, "configuration", None) or {}).get("hnsw") or {})
        if current.get("ef_search") != wanted:
            collection.modify(configuration={"hnsw": {"ef_search": wanted}})
    return collection
