"""``recall()``: validate the request, settle the ranking options, run the stages
(``channels``, ``fusion``, ``context``, ``ranking``), then record the recall (recall
statistics, live event, an audit entry where the namespace audits reads)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit.log import record as audit
from apps.core.roles import Action
from apps.memories import changes, recall_stats, schemas, sharing
from apps.memories.models import Memory
from apps.memories.recall import fusion, ranking
from apps.memories.recall.as_of import AsOf
from apps.memories.recall.channels import _search_channels
from apps.memories.recall.context import Rows, _embeddings, _hydrate, _session_context
from apps.memories.recall.results import RecallHit, RecallResult, _Stopwatch
from apps.memories.results import SharedMemory
from apps.ops import metrics
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal
from apps.tenancy.services import authorize, resolve_namespace


@metrics.observed("recall")
def recall(principal: Principal, data: Mapping[str, Any], *, namespace: str | None = None,
           exclude_ids: Sequence[str] = (),
           on_lexical: Callable[[list[tuple[uuid.UUID, float]]], None] | None = None,
           ) -> RecallResult:
    """The ``k`` memories that best answer ``query`` among those matching the filters.

    ``mode`` picks the channels: ``vector`` (meaning, Chroma), ``lexical`` (keywords,
    the SQL full-text index) or ``hybrid`` (both, fused with recency, importance and
    the optional reranker). ``ranking.finish`` then applies the minimum score and MMR.
    Ranking settings come from the request, else the namespace, else the server. Every
    hit keeps its per-input parts for ``explain``. ``on_lexical`` (the WebSocket door's
    streaming) gets the keyword channel's ranked ids as soon as they are known, while
    the vector side may still run.

    With ``include_shared`` every namespace that currently grants the caller's namespace
    access is searched too, within its grants' scope, and all candidates are ranked
    together as if they were one namespace (see ``_search_channels``).

    With ``as_of`` the recall ranks what the namespaces held at that moment: memories
    stored after it are left out, memories edited since are ranked and shown as they were
    then (``recall.as_of``). It counts as a recall of the memories it returns (statistics,
    live event, audit), like any other.
    """
    params = schemas.validate(schemas.RecallInput, data)
    ns = resolve_namespace(principal, params.get("namespace") or namespace)
    authorize(principal, ns.pk, Action.READ)
    options = _recall_options(ns, params)
    k, mode = params["k"], options.mode
    filters = params.get("filters") or {}
    sources = sharing.sources(ns, params["include_shared"])
    as_of = AsOf.load(sources, params["as_of"], filters) if params.get("as_of") else None
    if as_of is not None:  # the channels' filters: stored by the moment, too
        filters = {**filters, "as_of": as_of.moment}
    result = RecallResult(ns, params["query"], k, [], mode=mode, explain=params["explain"],
                          options=options, sources=sources, as_of=as_of)
    excluded = {uuid.UUID(str(i)) for i in exclude_ids}
    depth = options.candidate_depth(k)
    # Each channel proposes more than k in hybrid mode so the fusion has candidates to
    # agree on. If SQL drops hits (expired, outside their validity, just deleted), the
    # search widens.
    pool = depth if mode != "hybrid" else max(4 * k, depth, settings.MEMORYWEB_HYBRID_POOL)
    embedding: dict[str, Any] = {}  # the query vector, computed once even if the search widens
    rows = Rows()  # rows read by primary key, kept for the later stages (a widened search re-reads)
    # hybrid: the keyword hits' rows are read while the vector side still runs
    prefetch = None if as_of is not None else (lambda hits: rows.prefetch(hits, depth))
    while True:
        channels = _search_channels(sources, params["query"], mode, filters, pool, excluded,
                                    result, embedding, on_lexical, as_of, prefetch)
        on_lexical = None  # once: a widened search does not stream again
        scored = fusion.single(mode, channels[mode]) if mode != "hybrid" else fusion.fuse(
            channels, options.fusion, options.weights)
        if mode == "hybrid":
            scored = _session_context(scored, filters, options, result, rows)
        with _Stopwatch(result.timings, "sql"):
            candidates = _hydrate(sources, scored, depth, filters, as_of, rows)
        exhausted = all(len(found) < pool for found in channels.values())
        if len(candidates) >= depth or exhausted or pool >= 8 * depth + 64:
            break
        pool *= 4
        rows.forget_rows()
    with _Stopwatch(result.timings, "rank"):
        finished = ranking.finish(params["query"], candidates, options, k,
                                  lambda ids: _embeddings(candidates, ids, as_of),
                                  explain_for=ns.pk if params["explain"] else None)
    result.hits = [RecallHit(c.memory, c.score, c.parts) if c.memory.namespace_id == ns.pk
                   else RecallHit(SharedMemory(c.memory), c.score, _grantee_parts(c.parts))
                   for c in finished]
    recall_stats.note_recall(ns.pk)
    if result.hits:
        own = [h.memory for h in result.hits if not h.shared]
        _note_recalled(own)
        changes.memories_recalled(ns, [memory.pk for memory in own], principal)
    if _audits_reads(ns):
        summary = {"k": k, "mode": mode, "results": len(result.hits),
                   "include_shared": params["include_shared"]}
        if as_of is not None:
            summary["as_of"] = as_of.describe()["as_of"]
        with transaction.atomic():
            audit(principal, "memory.recall", namespace=ns,
                  record_ids=[h.memory.pk for h in result.hits], summary=summary)
    metrics.RECALLS.labels(mode).inc()
    return result


def _recall_options(ns: Namespace, params: Mapping[str, Any]) -> ranking.RecallOptions:
    """The ranking settings in force, refused (400) if every recall would be empty under
    them or one would be ignored: the request's over the namespace's over the server's."""
    options = ranking.options_for(ns, params)
    ranking.check(options, {**(ns.recall_defaults or {}), **params})
    return options


def _audits_reads(ns: Namespace) -> bool:
    """Recalls are audited where the namespace (else the server) says so: an entry per
    recall turns every read into a write."""
    return settings.MEMORYWEB_AUDIT_READS if ns.audit_reads is None else ns.audit_reads


def _note_recalled(memories: Sequence[Memory]) -> None:
    recall_stats.note_recalled(m.pk for m in memories)
    now = timezone.now()
    for memory in memories:  # what the caller sees matches what will be stored
        memory.access_count += 1
        memory.last_recalled_at = now


def _grantee_parts(parts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A shared memory's explain parts, without what describes the grantor: a strength
    prior's parts and factors (its agents' track record, its conflicts), as GET
    /api/v1/memories/{id} shows no strength through a grant. The number stays."""
    if "strength" not in parts:
        return parts
    kept = {key: value for key, value in parts["strength"].items()
            if key not in ("parts", "factors")}
    return {**parts, "strength": kept}
