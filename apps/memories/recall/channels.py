"""The recall channels: candidates from the vector index (Chroma) and from the keyword
index (SQL full text), asked of each source namespace and merged across them; and the
recall filters in each store's language (``_where`` for Chroma, ``_filtered`` for SQL,
which deletion by filter uses too)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Coalesce

from apps.core.errors import Unavailable
from apps.memories import lexical, sealing, sharing
from apps.memories.embeddings import get_embedder
from apps.memories.models import Memory, MemoryTag
from apps.memories.recall import fusion
from apps.memories.recall.as_of import AsOf
from apps.memories.recall.as_of import merge as as_of_merge
from apps.memories.recall.results import RecallResult, _Stopwatch
from apps.memories.vectorstore import META_KEY, TAG_KEY, get_vector_store
from apps.tenancy.models import Namespace

log = logging.getLogger(__name__)

#: Threads for the vector side of hybrid recalls (one per concurrent hybrid recall).
_channel_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="recall-vector")


def _search_channels(sources: Sequence[sharing.Source], query: str, mode: str,
                     filters: Mapping[str, Any], n: int, excluded: set[uuid.UUID],
                     result: RecallResult, embedding: dict[str, Any],
                     on_lexical: Callable[[list[tuple[uuid.UUID, float]]], None] | None = None,
                     as_of: AsOf | None = None,
                     prefetch: Callable[[list[tuple[uuid.UUID, float]]], None] | None = None,
                     ) -> dict[str, list[tuple[uuid.UUID, float]]]:
    """Ask each channel of ``mode`` for ``n`` candidates, best first, across the sources.

    In hybrid mode the vector side (model + Chroma, no database) runs on a helper thread
    while this thread asks SQL; both release the GIL while they work.

    Several sources (``include_shared``): each channel asks every source for ``n``
    candidates and keeps the ``n`` best of all, treating every source alike (no source
    wins for being the caller's, first, larger or smaller), and fusion then runs once.
    Vector candidates compare by cosine similarity: one embedding model, so identical
    content scores identically anywhere. Keyword candidates compare by their rank within
    their own namespace (``_by_rank``): BM25 uses each namespace's own term statistics
    (lexical.py), so its scores do not compare across namespaces, and a grantor's raw
    scores would tell a grantee how common a word is among memories it was not shown.

    ``as_of`` (an as-of recall, ``recall.as_of``): its "edited since" memories are kept out
    of both channels, and those that answer the recall at the moment are put back into
    each source's list by their score as they were then, before the sources are merged.

    ``prefetch`` (hybrid): called with the keyword hits when they are known and the
    vector side is still running, so the request thread reads their rows from SQL
    instead of waiting idle (``context.Rows``). Its time is the ``prefetch`` stage.
    """
    searched = excluded | as_of.excluded if as_of is not None else excluded

    def vector() -> list[tuple[uuid.UUID, float]]:
        found = []
        for s in sources:
            hits = _vector_channel(s, query, filters, n, searched, result, embedding)
            if as_of is not None:
                hits = as_of_merge(hits, as_of.vector_hits(s, embedding["vector"], n, excluded), n)
            found.append(hits)
        return _best(found, n)

    def keyword() -> list[tuple[uuid.UUID, float]]:
        found = []
        for s in sources:
            lexical_query = _lexical_query(s, query, result)
            hits = _lexical_channel(s, lexical_query, filters, n, searched, result)
            if as_of is not None:
                weight = settings.MEMORYWEB_LEXICAL_CONTEXT_WEIGHT
                hits = as_of_merge(hits, as_of.keyword_hits(s, lexical_query, n, weight, excluded), n)
            found.append(hits)
        hits = _best([_by_rank(hits) for hits in found] if len(found) > 1 else found, n)
        if on_lexical is not None:
            on_lexical(hits)
        return hits

    if mode == "vector":
        return {"vector": vector()}
    if mode == "lexical":
        return {"lexical": keyword()}
    pending = _channel_pool.submit(vector)
    lexical_hits = keyword()
    if prefetch is not None and not pending.done():
        with _Stopwatch(result.timings, "prefetch"):
            prefetch(lexical_hits)
    return {"lexical": lexical_hits, "vector": pending.result()}


def _by_rank(hits: list[tuple[uuid.UUID, float]]) -> list[tuple[uuid.UUID, float]]:
    """Replace scores by 1 / (60 + rank): the reciprocal-rank scale, the same for every
    namespace whatever its size or vocabulary."""
    return [(pk, 1.0 / (fusion.RRF_K + rank)) for rank, (pk, _) in enumerate(hits, start=1)]


def _best(lists: Sequence[list[tuple[uuid.UUID, float]]], n: int) -> list[tuple[uuid.UUID, float]]:
    """One source: its list. Several: the ``n`` highest scores of all, ties by id."""
    if len(lists) == 1:
        return lists[0]
    merged = [hit for hits in lists for hit in hits]
    merged.sort(key=lambda hit: (-hit[1], str(hit[0])))
    return merged[:n]


def _vector_channel(source: sharing.Source, query: str, filters: Mapping[str, Any], n: int,
                    excluded: set[uuid.UUID], result: RecallResult, embedding: dict[str, Any],
                    ) -> list[tuple[uuid.UUID, float]]:
    """Nearest neighbours in Chroma (cosine similarity), filters and grant scope applied
    inside Chroma."""
    if "vector" not in embedding:
        with _Stopwatch(result.timings, "embed"):
            embedding["vector"] = get_embedder().embed([query])[0]
    vector = embedding["vector"]
    where = _and(_where(filters, source.namespace), source.where())
    try:
        with _Stopwatch(result.timings, "vector"):
            hits = get_vector_store().query(source.namespace, vector, n + len(excluded), where)
    except Exception as exc:
        log.warning("vector recall failed: %s", exc)
        raise Unavailable("the vector index is unavailable; retry shortly.") from exc
    # Ties by id, like the keyword channel: an index's walk order (which differs between
    # two builds of the same vectors) must not decide the order of equal scores.
    found = [(uuid.UUID(h.id), h.similarity) for h in hits if uuid.UUID(h.id) not in excluded]
    found.sort(key=lambda hit: (-hit[1], hit[0].hex))
    return found[:n]


def _and(*clauses: dict | None) -> dict | None:
    """Chroma ``where`` clauses joined with ``$and`` (None ones left out)."""
    present = [clause for clause in clauses if clause]
    if len(present) < 2:
        return present[0] if present else None
    return {"$and": present}


def _lexical_query(source: sharing.Source, query: str, result: RecallResult) -> lexical.LexicalQuery:
    """The keyword query asked of ``source``: common terms pruned in the caller's own
    namespace only. The explain fields describe the caller's own namespace's query."""
    lexical_query = lexical.build_query(query)
    if not source.shared:  # a grantor's frequencies would show through what is dropped
        lexical_query = lexical.prune_common(lexical_query, source.namespace.pk)
        result.lexical_query = lexical_query.engine_query
        result.lexical_dropped = lexical_query.dropped
    return lexical_query


def _lexical_channel(source: sharing.Source, lexical_query: lexical.LexicalQuery,
                     filters: Mapping[str, Any], n: int, excluded: set[uuid.UUID],
                     result: RecallResult) -> list[tuple[uuid.UUID, float]]:
    """Keyword matches from the SQL full-text index, filters and grant scope applied in
    the same query."""
    ns = source.namespace
    candidates = None
    if any(filters.values()) or not source.unrestricted:
        # No ORDER BY: the default (-created_at) made SQLite walk the namespace's created_at
        # index for the ids the keyword search is restricted to, not the filter's index.
        candidates = source.restrict(_filtered(filter_start(ns, filters), filters, ns)).order_by()
    with _Stopwatch(result.timings, "lexical"):
        found = lexical.search(ns.pk, lexical_query, n + len(excluded), candidates)
    return [(pk, score) for pk, score in found if pk not in excluded][:n]


def filter_start(namespace: Namespace, filters: Mapping[str, Any]):
    """The namespace's memories, as the queryset ``_filtered`` narrows.

    With a tag filter the namespace's rows of the tag (the (namespace, tag) index) are
    the selective side; with ``namespace_id = ?`` SQLite's planner, which has no
    statistics, walked the namespace's index instead and checked every memory of it
    against the tag subquery. ``in_namespace_checked`` selects the same rows without
    offering it that index (tests/memories/test_tag_filter_plans.py)."""
    if filters.get("tags") or filters.get("tags_any"):
        return Memory.objects.in_namespace_checked(namespace)
    return Memory.objects.filter(namespace=namespace)


def _filtered(queryset, filters: Mapping[str, Any], namespace: Namespace):
    """Recall filters as SQL conditions: the same meaning as ``_where`` has in Chroma.
    Metadata values are compared as the namespace stores them (blind tokens where it is
    encrypted, apps/memories/sealing.py)."""
    for name in ("agent_id", "session_id", "kind"):
        if filters.get(name):
            queryset = queryset.filter(**{name: filters[name]})
    # The tag rows of ``namespace`` only (a tag row's namespace is its memory's): by tag
    # alone the subquery read every namespace's tag rows, (namespace, tag) unused.
    for tag in filters.get("tags") or []:
        queryset = queryset.filter(pk__in=MemoryTag.objects.filter(
            namespace_id=namespace.pk, tag=tag).values("memory_id"))
    if filters.get("tags_any"):
        queryset = queryset.filter(pk__in=MemoryTag.objects.filter(
            namespace_id=namespace.pk, tag__in=filters["tags_any"]).values("memory_id"))
    if filters.get("created_after"):
        queryset = queryset.filter(created_at__gte=filters["created_after"])
    if filters.get("created_before"):
        queryset = queryset.filter(created_at__lt=filters["created_before"])
    if filters.get("as_of"):  # an as-of recall: stored by then (recall.as_of)
        queryset = queryset.filter(created_at__lte=filters["as_of"])
    if filters.get("occurred_after") or filters.get("occurred_before"):
        queryset = queryset.alias(_event=Coalesce("occurred_at", "created_at"))
        if filters.get("occurred_after"):
            queryset = queryset.filter(_event__gte=filters["occurred_after"])
        if filters.get("occurred_before"):
            queryset = queryset.filter(_event__lt=filters["occurred_before"])
    column, metadata = sealing.metadata_filter(namespace, filters.get("metadata") or {})
    for index, (key, value) in enumerate(metadata.items()):
        alias = f"_meta_{index}"  # KeyTransform quotes the key: no lookup injection via "__"
        queryset = queryset.alias(**{alias: KeyTransform(key, column)}).filter(**{alias: value})
    return queryset


def _where(filters: Mapping[str, Any], namespace: Namespace) -> dict | None:
    """Recall filters as one Chroma ``where`` clause (all scalar, all pushed down; an
    encrypted namespace's metadata values as their blind tokens)."""
    clauses: list[dict] = []
    for name in ("agent_id", "session_id", "kind"):
        if filters.get(name):
            clauses.append({name: filters[name]})
    for tag in filters.get("tags") or []:
        clauses.append({TAG_KEY + tag: True})
    any_of = [{TAG_KEY + tag: True} for tag in filters.get("tags_any") or []]
    if any_of:
        clauses.append(any_of[0] if len(any_of) == 1 else {"$or": any_of})
    if filters.get("created_after"):
        clauses.append({"created_ts": {"$gte": filters["created_after"].timestamp()}})
    if filters.get("created_before"):
        clauses.append({"created_ts": {"$lt": filters["created_before"].timestamp()}})
    if filters.get("as_of"):
        clauses.append({"created_ts": {"$lte": filters["as_of"].timestamp()}})
    if filters.get("occurred_after"):
        clauses.append({"event_ts": {"$gte": filters["occurred_after"].timestamp()}})
    if filters.get("occurred_before"):
        clauses.append({"event_ts": {"$lt": filters["occurred_before"].timestamp()}})
    for key, value in sealing.metadata_filter(namespace, filters.get("metadata") or {})[1].items():
        clauses.append({META_KEY + key: value})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
