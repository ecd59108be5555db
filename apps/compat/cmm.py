"""Seed 000's HTTP API (the "CMM" memory server), as drop-in routes over the services.

Its clients address memories by integer (``/memory/42``), write ``gist`` for the text
and an ``importance`` where 1.0 is an ordinary memory. Here every route needs a key
(``Authorization: Bearer``), each maps onto the same service call and role check as the
REST API, and a memory's integer id is an :class:`ExternalId` of its namespace: the
importer keeps the ones a data directory had, and a memory stored through any other
door gets the next free number the first time a seed 000 route shows it.

Importance: MemoryWeb's is 0..1 (0.5 = ordinary). Seed 000's is a positive weight
(1.0 = ordinary, larger = more important, no upper bound), so ``unit = w / (1 + w)`` and
back ``w = unit / (1 - unit)``: 1.0 <-> 0.5, 2.0 <-> 0.667, 0 <-> 0, order kept; the top
of MemoryWeb's scale (1.0) shows as 1e12.

``/end_of_day`` answers the day's digest (apps/lifecycle/digest.py, the timeline's day
node with grips to its sources), ``/consolidate`` merges memories that say the same thing
and ``/merge`` merges namespaces (apps/lifecycle).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.compat import openapi
from apps.compat.common import check_own_agent, int_param
from apps.core.errors import InvalidInput, NotFound, PermissionDenied
from apps.core.parsers import JSONParser  # with the nesting limit, as every JSON route
from apps.core.query_params import KnownQueryParams
from apps.core.roles import Action
from apps.lifecycle import consolidation, digest, namespace_merge
from apps.lifecycle.api.doors import digest_errors, with_retry_after
from apps.lifecycle.representation import conflict_rows, proposal_rows
from apps.memories import external_ids, services
from apps.memories.models import ExternalId, Memory
from apps.memories.representation import iso_datetime
from apps.memories.results import memory_of
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal
from apps.tenancy.services import authorize, resolve_namespace
from apps.timeline.representation import grip_row

CMM = ExternalId.System.CMM
TAG = "seed 000 drop-in (cmm)"
NAMESPACE_PARAM = OpenApiParameter("namespace", OpenApiTypes.STR,
                                   description="Namespace slug (system-admin keys only).")


def importance_from_cmm(weight: float) -> float:
    return weight / (1.0 + weight)


#: MemoryWeb's top importance (1.0) on seed 000's scale, which has no top.
CMM_TOP = 1e12


def importance_to_cmm(unit: float) -> float:
    if unit >= 1.0:
        return CMM_TOP
    return round(unit / (1.0 - unit), 9)


def same_importance(unit: float, weight: float) -> bool:
    """A weight read from a GET and sent back unchanged (rounding aside)."""
    return abs(importance_from_cmm(weight) - unit) < 1e-8


# --- ids --------------------------------------------------------------------------------

_NUMBER = re.compile(r"\d{1,16}", re.ASCII)


def _memory_pk(namespace: Namespace, memory_id: str) -> uuid.UUID:
    """``/memory/42`` (or the memory's own UUID) to the memory's key; 404 otherwise."""
    if _NUMBER.fullmatch(memory_id):
        found = (ExternalId.objects.filter(namespace=namespace, system=CMM,
                                           external_id=str(int(memory_id)))
                 .values_list("memory_id", flat=True).first())
        if found is not None:
            return found
        raise NotFound(f"memory {memory_id} not found.")
    try:
        return uuid.UUID(memory_id)
    except ValueError:
        raise NotFound(f"memory {memory_id} not found.") from None


# --- translation ----------------------------------------------------------------------------

def rows(namespace: Namespace, memories: Sequence[Memory]) -> list[dict[str, Any]]:
    """Memories as seed 000 shows them (MemoryWeb's extra fields kept beside)."""
    numbers = external_ids.numbers(namespace, CMM, [m.pk for m in memories
                                                    if m.namespace_id == namespace.pk])
    found = []
    for m in memories:
        found.append({
            "id": numbers.get(m.pk), "gist": m.content, "importance": importance_to_cmm(m.importance),
            "agent_id": m.agent_id, "session_id": m.session_id, "timestamp": iso_datetime(m.created_at),
            "metadata": {**m.metadata, "agent_id": m.agent_id, "session_id": m.session_id},
            "tags": m.tags, "kind": m.kind, "namespace": m.namespace.slug,
            "memoryweb_id": str(m.pk), "version": m.version, "updated_at": iso_datetime(m.updated_at),
        })
    return found


#: Seed 000 fields an ingest or an edit may carry (``gist`` is the text).
_WRITABLE = {"gist", "content", "text", "importance", "metadata", "tags", "kind", "session_id",
             "agent_id", "namespace", "occurred_at", "expires_at", "confidence"}


def memory_input(principal: Principal, body: Any, *, current: Memory | None = None
                 ) -> dict[str, Any]:
    """A seed 000 body as MemoryWeb's memory input (validated again by the service).

    ``current``: the memory an edit changes. What a GET showed and the client sends
    back unchanged (its agent and session, in ``metadata`` too; its importance) is not
    a change; a different agent or session is refused, since they are provenance.
    """
    edit = current is not None
    if not isinstance(body, Mapping):
        raise InvalidInput("expected a JSON object.")
    unknown = sorted(set(body) - _WRITABLE - ({"query", "k", "top_k"} if not edit else set()))
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}.", field=unknown[0])
    data: dict[str, Any] = {}
    texts = [name for name in ("gist", "content", "text") if name in body]
    if len(texts) > 1:
        raise InvalidInput(f"give one of gist, content, text, not {' and '.join(texts)}.",
                           field=texts[1])
    if texts:
        data["content"] = body[texts[0]]
    elif not edit:
        raise InvalidInput("gist is required.", field="gist")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise InvalidInput("metadata must be a JSON object.", field="metadata")
        metadata = dict(metadata)
        _check_agent(principal, metadata.pop("agent_id", None), "metadata.agent_id", current)
        session = metadata.pop("session_id", None)
        _check_session(session, "metadata.session_id", current)
        if session is not None and not edit:
            data["session_id"] = session
        data["metadata"] = metadata
    _check_agent(principal, body.get("agent_id"), "agent_id", current)
    if "importance" in body:
        weight = _weight(body["importance"])
        if current is None or not same_importance(current.importance, weight):
            data["importance"] = importance_from_cmm(weight)
    for name in ("tags", "kind", "occurred_at", "expires_at", "confidence", "namespace"):
        if name in body:
            data[name] = body[name]
    if "session_id" in body:
        _check_session(body["session_id"], "session_id", current)
        if not edit:
            data["session_id"] = body["session_id"]
    return data


def _weight(value: Any) -> float:
    bad = InvalidInput("importance must be a number >= 0 (1.0 = ordinary).", field="importance")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad
    try:
        weight = float(value)
    except OverflowError:
        raise bad from None
    if not math.isfinite(weight) or weight < 0:
        raise bad
    return weight


def _check_agent(principal: Principal, agent_id: Any, field: str, current: Memory | None) -> None:
    """Seed 000 clients send their agent_id; here it comes from the key. The same value
    is accepted, another one refused (an agent cannot write as someone else)."""
    if agent_id is None:
        return
    if current is not None:
        if agent_id != current.agent_id:
            raise InvalidInput("agent_id is provenance; an edit cannot change it.", field=field)
        return
    check_own_agent(principal, agent_id, field)


def _check_session(session_id: Any, field: str, current: Memory | None) -> None:
    if current is not None and session_id is not None and session_id != current.session_id:
        raise InvalidInput("session_id is provenance; an edit cannot change it.", field=field)


def _k(body: Mapping[str, Any], default: int = 5) -> int:
    """``k`` (or ``top_k``; ``k`` wins). Each one given must be a valid count, also the
    one that loses, so a body the schema calls invalid is never quietly accepted."""
    high = settings.MEMORYWEB_LIMITS["max_k"]
    for name in ("k", "top_k"):
        value = body.get(name)
        if name in body and (isinstance(value, bool) or not isinstance(value, int)
                             or not 1 <= value <= high):
            raise InvalidInput(f"{name} must be an integer from 1 to {high}.", field=name)
    return body.get("k", body.get("top_k", default))


def _namespace(request, body: Any = None) -> Namespace:
    slug = body.get("namespace") if isinstance(body, Mapping) else None
    if slug in (None, ""):  # anything else, {} or 0 too, is checked (and is a 404)
        slug = request.query_params.get("namespace") or None
    return resolve_namespace(request.user, slug)


# --- views ----------------------------------------------------------------------------------

class AnyTypeJSONParser(JSONParser):
    """Seed 000's documented calls are ``curl -d '{...}'``, which labels the JSON as a
    form (``application/x-www-form-urlencoded``): the body is read as JSON whatever its
    declared type, and anything else is a 400 naming the problem."""

    media_type = "*/*"


class CmmView(KnownQueryParams, APIView):
    """Seed 000's routes (their own tag in the OpenAPI schema); bodies are JSON. Each names
    its namespace with ``?namespace=`` (system keys); any other query parameter is a 400."""

    parser_classes = [AnyTypeJSONParser]
    query_params = {"namespace"}


@extend_schema(tags=[TAG])
class IngestView(CmmView):
    @extend_schema(summary="Store a memory (seed 000 /ingest: gist, importance, metadata)",
                   request={"application/json": openapi.CmmIngest},
                   responses={201: OpenApiTypes.OBJECT, 200: OpenApiTypes.OBJECT})
    def post(self, request):
        ns = _namespace(request, request.data)
        result = services.ingest(request.user, memory_input(request.user, request.data),
                                 ns.slug)
        row = rows(ns, [result.memory])[0]
        return Response({"id": row["id"], "duplicate": result.duplicate, "memory": row},
                        status=status.HTTP_200_OK if result.duplicate else status.HTTP_201_CREATED)


def _recall_query(body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidInput("expected a JSON object.")
    unknown = sorted(set(body) - {"query", "k", "top_k", "agent_id", "session_id", "namespace"})
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}.", field=unknown[0])
    query = {"query": body.get("query"), "k": _k(body)}
    # Null or "" is no filter (seed 000 clients send them); anything else is validated.
    filters = {name: body[name] for name in ("agent_id", "session_id")
               if body.get(name) not in (None, "")}
    if filters:
        query["filters"] = filters
    return query


@extend_schema(tags=[TAG])
class RecallView(CmmView):
    @extend_schema(summary="Recall by meaning (seed 000 /recall: query, k, agent_id filter)",
                   request={"application/json": openapi.CmmRecall}, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        body = request.data
        ns = _namespace(request, body)
        result = services.recall(request.user, _recall_query(body), namespace=ns.slug)
        found = rows(ns, [hit.memory for hit in result.hits])
        for row, hit in zip(found, result.hits, strict=True):
            row["score"] = round(hit.score, 6)
        return Response({"query": result.query, "results": found, "count": len(found)})


@extend_schema(tags=[TAG])
class IngestAndRecallView(CmmView):
    @extend_schema(summary="Store a memory, then recall related ones (seed 000)",
                   request={"application/json": openapi.CmmIngestAndRecall},
                   responses={201: OpenApiTypes.OBJECT, 200: OpenApiTypes.OBJECT})
    def post(self, request):
        body = request.data
        ns = _namespace(request, body)
        data = {**memory_input(request.user, body), "k": _k(body)}
        if body.get("query") is not None:  # else the memory's own text is the query
            data["query"] = body["query"]
        result = services.ingest_and_recall(request.user, data, ns.slug)
        memory_row = rows(ns, [result.stored.memory])[0]
        found = rows(ns, [hit.memory for hit in result.hits])
        for row, hit in zip(found, result.hits, strict=True):
            row["score"] = round(hit.score, 6)
        answer = {"id": memory_row["id"], "duplicate": result.stored.duplicate,
                  "memory": memory_row, "results": found}
        if result.recall_error:
            answer["recall_error"] = result.recall_error.as_dict()["error"]
        return Response(answer, status=status.HTTP_200_OK if result.stored.duplicate
                        else status.HTTP_201_CREATED)


@extend_schema(tags=[TAG], parameters=[NAMESPACE_PARAM])
class MemoryView(CmmView):
    @extend_schema(summary="A memory by its seed 000 id", responses=OpenApiTypes.OBJECT)
    def get(self, request, memory_id: str):
        ns = _namespace(request)
        memory = memory_of(services.get(request.user, _memory_pk(ns, memory_id)))
        return Response(rows(ns, [memory])[0])  # seed 000's row has no grantor statistics

    @extend_schema(summary="Edit a memory: gist, importance, metadata, tags (team admin)",
                   request={"application/json": openapi.CmmEdit}, responses=OpenApiTypes.OBJECT)
    def put(self, request, memory_id: str):
        ns = _namespace(request)
        current = memory_of(services.get(request.user, _memory_pk(ns, memory_id)))
        data = memory_input(request.user, request.data, current=current)
        data.pop("namespace", None)
        memory = services.update(request.user, current.pk, data, partial=True)
        return Response(rows(ns, [memory])[0])

    @extend_schema(summary="Delete a memory (team admin)", responses={200: OpenApiTypes.OBJECT})
    def delete(self, request, memory_id: str):
        ns = _namespace(request)
        pk = _memory_pk(ns, memory_id)
        services.delete(request.user, pk)
        return Response({"deleted": True, "id": int(memory_id) if _NUMBER.fullmatch(memory_id)
                         else memory_id})


@extend_schema(tags=[TAG])
class MemoriesView(CmmView):
    query_params = {"namespace", "agent_id", "session_id", "limit"}

    @extend_schema(summary="Recent memories, newest first (seed 000 /memories)",
                   parameters=[NAMESPACE_PARAM,
                               OpenApiParameter("agent_id", OpenApiTypes.STR),
                               OpenApiParameter("session_id", OpenApiTypes.STR),
                               OpenApiParameter("limit", openapi.PAGE_LIMIT,
                                                description="Default 20, at most 1,000.")],
                   responses=OpenApiTypes.OBJECT)
    def get(self, request):
        ns = _namespace(request)
        limit = int_param(request.query_params, "limit", 20, 1,
                          settings.MEMORYWEB_LIMITS["max_page_size"])
        queryset = services.list_memories(request.user, ns.slug)
        for name in ("agent_id", "session_id"):
            value = request.query_params.get(name)
            if value:
                queryset = queryset.filter(**{name: value})
        found = rows(ns, list(queryset[:limit]))
        return Response({"memories": found, "count": len(found)})


@extend_schema(tags=[TAG], parameters=[NAMESPACE_PARAM])
class AgentMemoriesView(CmmView):
    @extend_schema(summary="Delete every memory of an agent, in one namespace or all "
                   "(system admin)",
                   responses={200: OpenApiTypes.OBJECT})
    def delete(self, request, agent_id: str):
        # Seed 000 had one store: its clients' call without ?namespace= means everywhere
        # (MemoryWeb's own route asks for all_namespaces=true instead).
        namespace = request.query_params.get("namespace") or None
        counts = services.delete_by_agent(request.user, agent_id, namespace,
                                          all_namespaces=namespace is None)
        return Response({"deleted": sum(counts.values()), "agent_id": agent_id,
                         "namespaces": counts})


@extend_schema(tags=[TAG], parameters=[NAMESPACE_PARAM])
class SaveView(CmmView):
    @extend_schema(summary="Seed 000's /save: nothing to do, every write is already durable "
                   "(team admin)", request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        if not request.user.is_system_admin:  # a system admin may save "everything"
            authorize(request.user, _namespace(request, request.data).pk, Action.EDIT)
        return Response({"saved": True, "message": "MemoryWeb commits every write to its "
                         "database before answering; there is nothing left to save."})


def _object(body: Any, allowed: set[str]) -> Mapping[str, Any]:
    """A body that is a JSON object with only ``allowed`` fields, or a 400 naming the
    first other one."""
    if not isinstance(body, Mapping):
        raise InvalidInput("expected a JSON object.")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}.", field=unknown[0])
    return body


#: What seed 000's /consolidate body may carry.
_CONSOLIDATE = {"namespace", "dry_run", "threshold", "agent_id", "kind", "tags", "merged_text"}


@extend_schema(tags=[TAG])
class ConsolidateView(CmmView):
    """Seed 000's /consolidate (team admin): merges the namespace's memories that say the
    same thing at once unless ``dry_run`` (the seed's call does the work); each group's
    best member stays (``kept``), the others are superseded by it, reversibly
    (``POST /api/v1/memories/{id}/unmerge``; docs/lifecycle.md). Ids are seed 000 numbers,
    the UUIDs beside them."""

    @extend_schema(summary="Seed 000's /consolidate: merge memories that say the same thing "
                   "(team admin)", request={"application/json": openapi.CmmConsolidate},
                   responses=OpenApiTypes.OBJECT)
    def post(self, request):
        body = _object(request.data, _CONSOLIDATE)
        ns = _namespace(request, body)
        data: dict[str, Any] = {name: body[name] for name in ("dry_run", "threshold",
                                                              "merged_text")
                                if body.get(name) is not None}
        filters = {name: body[name] for name in ("agent_id", "kind", "tags")
                   if body.get(name) not in (None, "", [])}
        if filters:
            data["filters"] = filters
        try:
            outcome = consolidation.consolidate(request.user, ns.slug, data,
                                                dry_run_default=False,
                                                limit=settings.MEMORYWEB_CONSOLIDATE_MAX)
        except InvalidInput as exc:
            raise consolidation.renamed(exc, {f"filters.{name}": name
                                              for name in ("agent_id", "kind", "tags")}) from None
        rows, conflicts = proposal_rows(outcome), conflict_rows(outcome)
        numbers = external_ids.numbers(ns, CMM, [
            uuid.UUID(m) for m in [*(m for row in rows for m in row["members"]),
                                   *(m for c in conflicts for m in c["members"])]])
        number = {str(pk): n for pk, n in numbers.items()}
        return Response({
            "namespace": ns.slug, "dry_run": outcome.dry_run, "threshold": outcome.threshold,
            "candidates": outcome.candidates, "merged": outcome.merged,
            "superseded": outcome.superseded,
            "groups": [{"kept": number.get(row["survivor"]),
                        "merged": [number.get(m) for m in row["members"] if m != row["survivor"]],
                        "memoryweb_ids": row["members"], "similarity": row["similarity"],
                        "gist": row["merged_content"],
                        **({"applied": row["applied"]} if "applied" in row else {})}
                       for row in rows],
            "conflicts": [{"ids": [number.get(m) for m in c["members"]],
                           "memoryweb_ids": c["members"], "differs_in": c["differs_in"]}
                          for c in conflicts]})


#: What seed 000's /end_of_day body may carry (null or "" is the default, as its clients send).
_END_OF_DAY = {"namespace", "date", "agent_id"}


def _digest_row(namespace: Namespace, found: digest.Digest) -> dict[str, Any]:
    """The digest as seed 000's clients read memories: sources and the summary memory by
    their seed 000 numbers (``id``), the UUIDs beside them."""
    node = found.node
    summary_memory = node.memory_id if node is not None else None
    numbers = external_ids.numbers(namespace, CMM, [*(g.memory_id for g in found.grips),
                                                    *([summary_memory] if summary_memory else [])])
    grips = []
    for grip in found.grips:
        row = grip_row(grip)
        grips.append({"id": numbers.get(grip.memory_id), "memoryweb_id": row["memory_id"],
                      "grip_id": row["id"], "part": row["part"], "text": row["text"],
                      "excerpt": row["excerpt"], "occurred_at": row["occurred_at"],
                      "session_id": row["session_id"]})
    return {"date": found.day.isoformat(), "namespace": namespace.slug,
            "agent_id": found.agent_id, "built": found.built, "complete": found.complete,
            "empty": found.empty, "summary": node.summary if node is not None else "",
            "source_count": node.source_count if node is not None else 0,
            "status": node.status if node is not None else None,
            "node_id": str(node.pk) if node is not None else None,
            "memory_id": numbers.get(summary_memory) if summary_memory else None,
            "memoryweb_memory_id": str(summary_memory) if summary_memory else None,
            "grips": grips}


@extend_schema(tags=[TAG], parameters=[NAMESPACE_PARAM])
class EndOfDayView(CmmView):
    """Seed 000's /end_of_day (team admin): the day's digest, built now for that day
    only — the timeline's day node with its grips (apps/lifecycle/digest.py)."""

    @extend_schema(summary="Seed 000's /end_of_day: the day's digest with grips to its "
                   "sources (team admin)",
                   request={"application/json": openapi.CmmEndOfDay},
                   responses={200: OpenApiTypes.OBJECT, **digest_errors()})
    def post(self, request):
        body = _object(request.data, _END_OF_DAY)
        ns = _namespace(request, body)
        given = {name: body[name] for name in ("date", "agent_id") if body.get(name) not in (None, "")}
        found = digest.end_of_day(request.user, ns, **given)
        return Response(_digest_row(ns, found))

    def handle_exception(self, exc):
        return with_retry_after(super().handle_exception(exc), exc)


#: What seed 000's /merge body may carry.
_MERGE = {"source", "target", "dry_run"}


@extend_schema(tags=[TAG])
class MergeView(CmmView):
    """Seed 000's /merge (system admin): every memory of ``source`` moves into ``target``
    with its id and history, the source archived, its keys and grants revoked
    (apps/lifecycle/namespace_merge.py, as ``POST /api/v1/namespaces/{slug}/merge-into``)."""

    query_params: set[str] = set()

    @extend_schema(summary="Seed 000's /merge: merge one namespace into another (system admin)",
                   description="A large source is merged by a job: 202 with the merge to poll "
                   "at `GET /api/v1/namespace-merges/{id}`. `dry_run` reports and changes "
                   "nothing. Reversible: `POST /api/v1/namespace-merges/{id}/revert`.",
                   request={"application/json": openapi.CmmMerge},
                   responses={200: OpenApiTypes.OBJECT, 202: OpenApiTypes.OBJECT})
    def post(self, request):
        if not request.user.is_system_admin:
            raise PermissionDenied("only a system admin may merge namespaces.")
        body = _object(request.data, _MERGE)
        source = body.get("source")
        if not isinstance(source, str) or not source:
            raise InvalidInput("source: the slug of the namespace to merge is required.",
                               field="source")
        merge, row = namespace_merge.merge_into(
            request.user, source, {name: body[name] for name in ("target", "dry_run") if name in body})
        running = merge is not None and merge.state in ("queued", "running")
        return Response(row, status=status.HTTP_202_ACCEPTED if running else status.HTTP_200_OK)


@extend_schema(tags=[TAG])
class HealthView(CmmView):
    query_params = ()

    @extend_schema(summary="Seed 000's /health (with a key)", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response({"status": "ok", "service": "memoryweb"})
