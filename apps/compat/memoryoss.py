"""Seed 003's memory API (memoryOSS ``/v1/...``), as drop-in routes over the services.

Its clients (the memoryOSS SDKs, scripts) call ``/v1/store``, ``/v1/recall`` and so on
with ``Authorization: Bearer`` and read errors as ``{"error": "<message>"}``; these
routes answer in those shapes, with MemoryWeb's error ``code`` and ``field`` beside the
message. Each maps onto the same service call and role check as the REST API, so the
roles are MemoryWeb's (an edit is a team admin's; deleting by filter a system admin's).

Mapped, not copied: ``memory_type`` <-> kind (semantic = fact, episodic = episode,
procedural = procedure, working = note; MemoryWeb's other kinds are accepted as they
are); ``agent`` must be the key's own agent; ``tags`` in a recall matches any tag, as
there; ``limit`` is clamped to ``max_k``. Refused with a clear 400: client-side
embeddings (``embedding``, ``query_embedding``, ``zero_knowledge``), per-request
``weights`` and ``cursor`` paging. ``/v1/consolidate`` merges similar memories (team
admin) through apps/lifecycle/consolidation.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from apps.compat import openapi
from apps.compat.common import check_own_agent, int_param
from apps.core.client_address import client_address
from apps.core.errors import InvalidInput
from apps.core.query_params import KnownQueryParams
from apps.lifecycle import consolidation
from apps.lifecycle.representation import conflict_rows, proposal_rows
from apps.memories import memory_modes, schemas, services
from apps.memories.models import Memory, MemoryKind
from apps.memories.representation import iso_datetime
from apps.privacy import erasure, export
from apps.privacy.api.views import streaming
from apps.privacy.selectors import select
from apps.tenancy.services import authenticate_key, resolve_namespace

TAG = "seed 003 drop-in (memoryOSS /v1)"
TYPE_TO_KIND = {"semantic": MemoryKind.FACT, "episodic": MemoryKind.EPISODE,
                "procedural": MemoryKind.PROCEDURE, "working": MemoryKind.NOTE}
KIND_TO_TYPE = {MemoryKind.FACT: "semantic", MemoryKind.PREFERENCE: "semantic",
                MemoryKind.SUMMARY: "semantic", MemoryKind.EPISODE: "episodic",
                MemoryKind.OBSERVATION: "episodic", MemoryKind.PROCEDURE: "procedural",
                MemoryKind.NOTE: "working"}
MAX_RECALL_BATCH = 10
_UNSUPPORTED = {
    "embedding": "client-side embeddings are not supported: MemoryWeb embeds the content itself.",
    "zero_knowledge": "zero-knowledge storage (client-side embeddings) is not supported.",
    "query_embedding": "client-side query embeddings are not supported.",
    "weights": "per-request weights are not supported; a team admin sets a namespace's "
               "recall_defaults (weights) instead.",
    "cursor": "cursor paging is not supported; ask for up to max_k results with limit.",
}


class MemoryOssView(KnownQueryParams, APIView):
    """Errors as seed 003 writes them: ``{"error": message, "code", "field"?}``. A system
    key may name the namespace with ``?namespace=``; other query parameters are a 400."""

    query_params = {"namespace"}

    openapi_error_style = "flat"  # the schema's error answers (apps/core/openapi.py)

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        error = response.data.get("error") if isinstance(response.data, dict) else None
        if isinstance(error, dict):
            response.data = {"error": error.get("message", ""), "code": error.get("code"),
                             **({"field": error["field"]} if error.get("field") else {})}
        return response


def memory_row(m: Memory) -> dict[str, Any]:
    """A memory as seed 003 shows it, with MemoryWeb's kind, importance and metadata beside."""
    return {
        "id": str(m.pk), "content": m.content, "tags": m.tags, "agent": m.agent_id or None,
        "session": m.session_id or None, "namespace": m.namespace.slug,
        "memory_type": KIND_TO_TYPE.get(m.kind, "semantic"), "kind": m.kind, "status": "active",
        "version": m.version, "created_at": iso_datetime(m.created_at),
        "updated_at": iso_datetime(m.updated_at),
        "content_hash": m.content_hash, "confidence": m.confidence, "importance": m.importance,
        "metadata": m.metadata,
    }


def _object(body: Any, where: str | None = None) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidInput("expected a JSON object.", field=where)
    return body


def _checked(body: Any, allowed: set[str], prefix: str = "") -> Mapping[str, Any]:
    """A JSON object with only ``allowed`` fields, none of them a refused feature."""
    body = _object(body, prefix.rstrip(".") or None)
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}.", field=prefix + unknown[0])
    for name, reason in _UNSUPPORTED.items():
        if body.get(name) not in (None, False, [], {}):
            raise InvalidInput(reason, field=prefix + name)
    return body


def _kind(memory_type: Any, field: str) -> str:
    if not isinstance(memory_type, str):  # {} or [] raised TypeError (a 500)
        memory_type = None
    if memory_type in TYPE_TO_KIND:
        return TYPE_TO_KIND[memory_type]
    if memory_type in MemoryKind.values:
        return memory_type
    raise InvalidInput(f"memory_type must be one of {', '.join([*TYPE_TO_KIND, *MemoryKind.values])}.",
                       field=field)


_STORE_FIELDS = {"content", "tags", "agent", "session", "namespace", "memory_type",
                 "zero_knowledge", "embedding", "metadata", "importance", "confidence"}


def store_input(request, body: Any, prefix: str = "") -> dict[str, Any]:
    body = _checked(body, _STORE_FIELDS, prefix)
    check_own_agent(request.user, body.get("agent"), prefix + "agent")
    if body.get("namespace") is not None and not isinstance(body["namespace"], str):
        raise InvalidInput("namespace must be a string.", field=prefix + "namespace")
    data = {k: body[k] for k in ("content", "tags", "namespace", "metadata", "importance",
                                 "confidence") if k in body}
    if body.get("session") is not None:
        data["session_id"] = body["session"]
    if body.get("memory_type") is not None:
        data["kind"] = _kind(body["memory_type"], prefix + "memory_type")
    return data


def _namespace_of(request, body: Mapping[str, Any] | None = None) -> str | None:
    slug = (body or {}).get("namespace") or request.query_params.get("namespace")
    return slug or None


class TokenThrottle(AnonRateThrottle):
    """Key checks per client address (MEMORYWEB_TOKEN_RATE): guessing is hopeless against
    a key's entropy, but nobody needs to try it fast. The address is the peer's unless
    trusted proxies are configured (apps/core/client_address.py), never a header the
    client chose."""

    def get_rate(self) -> str:
        return settings.MEMORYWEB_TOKEN_RATE

    def get_ident(self, request) -> str:
        return client_address(request)


@extend_schema(tags=[TAG])
class AuthTokenView(MemoryOssView):
    """``/v1/auth/token``: a MemoryWeb key is itself the bearer token, so this checks the
    key and hands it back; the memoryOSS SDKs' ``authenticate()`` then works unchanged."""

    query_params = ()

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [TokenThrottle]

    @extend_schema(summary="Check an API key; it is the bearer token (seed 003)",
                   request=openapi.V1Token,
                   responses={200: OpenApiTypes.OBJECT, 401: openapi.FLAT_ERROR})
    def post(self, request):
        body = _object(request.data)
        raw = body.get("api_key")
        key = authenticate_key(raw) if isinstance(raw, str) else None
        if key is None:
            return Response({"error": "invalid API key", "code": "authentication_failed"},
                            status=status.HTTP_401_UNAUTHORIZED)
        expires_in = (int((key.expires_at - timezone.now()).total_seconds())
                      if key.expires_at else None)
        return Response({"token": raw, "token_type": "Bearer", "expires_in": expires_in})


@extend_schema(tags=[TAG])
class StoreView(MemoryOssView):
    @extend_schema(summary="Store a memory (seed 003)", request=openapi.V1Store,
                   responses=OpenApiTypes.OBJECT)
    def post(self, request):
        data = store_input(request, request.data)
        mode = _stores_nothing(request, data.get("namespace") or _namespace_of(request))
        if mode is not None:
            return _not_stored(mode, {"id": None, "version": None, "duplicate": False})
        result = services.ingest(request.user, data, _namespace_of(request))
        return Response({"id": str(result.memory.pk), "version": result.memory.version,
                         "duplicate": result.duplicate})


@extend_schema(tags=[TAG])
class StoreBatchView(MemoryOssView):
    @extend_schema(summary="Store up to max_batch memories, all or nothing (seed 003)",
                   request=openapi.V1StoreBatch, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        body = _object(request.data)
        items = body.get("memories")
        if not isinstance(items, list):
            raise InvalidInput("memories must be a list.", field="memories")
        data = [store_input(request, item, f"memories[{i}].") for i, item in enumerate(items)]
        slugs = {d.pop("namespace") for d in data if d.get("namespace")}
        if len(slugs) > 1:
            raise InvalidInput("a batch stores into one namespace.", field="memories")
        namespace = next(iter(slugs), None) or _namespace_of(request, body)
        mode = _stores_nothing(request, namespace)
        if mode is not None:
            return _not_stored(mode, {"stored": []})
        results = services.ingest_many(request.user, data, namespace)
        return Response({"stored": [{"id": str(r.memory.pk), "version": r.memory.version,
                                     "duplicate": r.duplicate} for r in results]})


def _stores_nothing(request, slug: str | None) -> str | None:
    """The memory mode (``off`` or ``readonly``) under which this store stores nothing
    (the namespace's default, or ``X-Memory-Mode`` where the namespace allows it: seed
    003's modes, apps/memories/memory_modes.py); None to store. Another tenant's
    namespace is still a 404."""
    namespace = resolve_namespace(request.user, slug)
    return memory_modes.stores_nothing(namespace, request.headers)


def _not_stored(mode: str, shape: dict[str, Any]) -> Response:
    """200 with nothing stored, saying so (``stored_nothing``) and why."""
    response = Response({**shape, "stored_nothing": True, "memory_mode": mode})
    response["X-Memory-Mode"] = mode
    return response


def _given(body: Mapping[str, Any], name: str) -> bool:
    """Whether a filter field is given: missing or null is not, nor an empty list for the
    list fields (``tags``, ``ids``); any other value is, and is validated (an ``agent`` of
    ``[]`` or ``0`` is a 400, not "no filter")."""
    value = body.get(name)
    return value is not None and not (name in ("tags", "ids") and value == [])


_RECALL_FIELDS = {"query", "limit", "agent", "session", "namespace", "memory_type", "tags",
                  "before", "after", "cursor", "consistency", "weights", "query_embedding"}


def recall_input(request, body: Any, prefix: str = "") -> dict[str, Any]:
    body = _checked(body, _RECALL_FIELDS, prefix)
    if body.get("consistency") not in (None, "strong", "eventual"):
        raise InvalidInput("consistency must be strong or eventual (recall is always strong "
                           "here: it reads its own writes).", field=prefix + "consistency")
    limit = body.get("limit", 10)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInput("limit must be a positive integer.", field=prefix + "limit")
    filters: dict[str, Any] = {}
    for source, target in (("agent", "agent_id"), ("session", "session_id"),
                           ("tags", "tags_any"), ("before", "created_before"),
                           ("after", "created_after")):
        if _given(body, source):
            filters[target] = body[source]
    if body.get("memory_type") is not None:
        filters["kind"] = _kind(body["memory_type"], prefix + "memory_type")
    after = request.headers.get("X-Memory-After")
    if after is not None and "created_after" not in filters:
        filters["after"] = after
    elif after is not None:  # the body's after wins, but a bad header is still a 400
        try:
            schemas.DateOrDateTimeField().run_validation(after)
        except ValidationError:
            raise InvalidInput("X-Memory-After must be a date (YYYY-MM-DD) or a date-time.",
                               field="X-Memory-After") from None
    query = {"query": body.get("query"), "k": min(limit, settings.MEMORYWEB_LIMITS["max_k"])}
    if body.get("namespace"):
        query["namespace"] = body["namespace"]
    if filters:
        query["filters"] = filters
    return query


def recall_answer(result: services.RecallResult) -> dict[str, Any]:
    found = []
    for hit in result.hits:
        provenance = [name for name, part in hit.parts.items()
                      if part.get("contribution", 0) > 0] or [result.mode]
        found.append({"memory": memory_row(hit.memory), "score": round(hit.score, 6),
                      "provenance": provenance})
    return {"memories": found}


@extend_schema(tags=[TAG])
class RecallView(MemoryOssView):
    @extend_schema(summary="Recall by meaning and keywords (seed 003)",
                   request=openapi.V1Recall, responses=OpenApiTypes.OBJECT,
                   parameters=[openapi.MEMORY_AFTER_HEADER])
    def post(self, request):
        query = recall_input(request, request.data)
        result = services.recall(request.user, query, namespace=_namespace_of(request))
        return Response(recall_answer(result))


@extend_schema(tags=[TAG])
class RecallBatchView(MemoryOssView):
    @extend_schema(summary=f"Up to {MAX_RECALL_BATCH} recalls in one call (seed 003)",
                   request=openapi.V1RecallBatch, responses=OpenApiTypes.OBJECT,
                   parameters=[openapi.MEMORY_AFTER_HEADER])
    def post(self, request):
        queries = _object(request.data).get("queries")
        if not isinstance(queries, list) or not queries:
            raise InvalidInput("queries must be a non-empty list.", field="queries")
        if len(queries) > MAX_RECALL_BATCH:
            raise InvalidInput(f"{len(queries)} queries; a batch holds at most "
                               f"{MAX_RECALL_BATCH}.", field="queries", code="too_many")
        prepared = [recall_input(request, q, f"queries[{i}].") for i, q in enumerate(queries)]
        results = [services.recall(request.user, q, namespace=_namespace_of(request))
                   for q in prepared]
        return Response({"results": [recall_answer(r) for r in results]})


@extend_schema(tags=[TAG])
class UpdateView(MemoryOssView):
    query_params = ()  # the memory's id names its namespace

    patch_body_is_whole = True  # the schema: id is required (apps/core/openapi.py)

    @extend_schema(summary="Edit a memory's content, tags or type (team admin; seed 003)",
                   request=openapi.V1Update, responses=OpenApiTypes.OBJECT)
    def patch(self, request):
        body = _checked(request.data, {"id", "content", "tags", "memory_type", "metadata",
                                       "importance", "confidence", "namespace"})
        if not body.get("id"):
            raise InvalidInput("id is required.", field="id")
        data = {k: body[k] for k in ("content", "tags", "metadata", "importance", "confidence")
                if k in body}
        if body.get("memory_type") is not None:
            data["kind"] = _kind(body["memory_type"], "memory_type")
        memory = services.update(request.user, body["id"], data, partial=True)
        return Response({"id": str(memory.pk), "version": memory.version,
                         "updated_at": iso_datetime(memory.updated_at), "status": "active"})


_FORGET_FIELDS = {"ids", "agent", "session", "namespace", "tags", "before", "subject_id"}


def _forget_body(request) -> Mapping[str, Any]:
    """The selection from the JSON body and the query string together: seed 003's SDKs send
    a body, curl users a query string, and a system admin may add ``?namespace=`` to
    either. A field given in both must say the same."""
    body = _object(request.data, None) if request.data else {}
    query = dict(request.query_params.items())
    for name in sorted(set(body) & set(query)):
        if body[name] != query[name]:
            raise InvalidInput(f"{name} differs between the body and the query string.",
                               field=name)
    return _checked({**query, **body}, _FORGET_FIELDS)


@extend_schema(tags=[TAG])
class ForgetView(MemoryOssView):
    query_params = _FORGET_FIELDS  # a DELETE may carry its selection in the query string

    reads_delete_body = True  # the schema documents the DELETE's JSON body

    @extend_schema(summary="Delete memories by ids (team admin) or by filter (system admin)",
                   request=openapi.V1Forget, responses={200: OpenApiTypes.OBJECT})
    def delete(self, request):
        body = _forget_body(request)
        if "subject_id" in body:
            raise InvalidInput("subject_id selects a certified erasure: DELETE "
                               "/v1/forget/certified.", field="subject_id")
        filters = {target: body[source] for source, target in (
            ("agent", "agent_id"), ("session", "session_id"), ("tags", "tags_any"),
            ("before", "created_before")) if _given(body, source)}
        ids = body.get("ids")
        if _given(body, "ids"):
            if filters:
                raise InvalidInput("give ids or filters, not both.", field="ids")
            if not isinstance(ids, list) or len(ids) > settings.MEMORYWEB_LIMITS["max_batch"]:
                raise InvalidInput(f"ids must be a list of at most "
                                   f"{settings.MEMORYWEB_LIMITS['max_batch']} ids.", field="ids")
            return Response({"deleted": services.delete_many(request.user, ids)})
        deleted = services.delete_matching(request.user, _namespace_of(request, body), filters)
        return Response({"deleted": deleted})


@extend_schema(tags=[TAG])
class ForgetCertifiedView(MemoryOssView):
    query_params = _FORGET_FIELDS

    reads_delete_body = True

    @extend_schema(summary="Erase a subject in one call with a deletion certificate (system "
                   "admin; seed 003)", request=openapi.V1ForgetCertified,
                   responses={200: OpenApiTypes.OBJECT})
    def delete(self, request):
        body = _forget_body(request)
        for name in ("tags", "before"):
            if body.get(name) not in (None, []):
                raise InvalidInput("a certified erasure selects by ids, agent, session or "
                                   f"subject_id, not {name}.", field=name)
        selector = {target: body[source] for source, target in (
            ("ids", "ids"), ("agent", "agent_id"), ("session", "session_id"),
            ("subject_id", "subject_id"), ("namespace", "namespace")) if _given(body, source)}
        done = erasure.forget_certified(request.user, selector)
        return Response({"deleted": len(done.erased), "erasure_request": str(done.pk),
                         "certificate": done.certificate})


def _export_document(chunks: Iterator[bytes], namespace: str) -> Iterator[bytes]:
    """The export's JSON lines as seed 003's one JSON document, streamed: its memories
    (with versions and other systems' ids), then the count, and the manifest of the
    JSON-lines export it was made from (``jsonl_manifest``: its SHA-256 and counts are
    those of ``GET /api/v1/export``, audit and grant lines included, which this document
    leaves out)."""
    yield (f'{{"namespace":{json.dumps(namespace)},"exported_at":'
           f'{json.dumps(timezone.now().isoformat())},"memories":[').encode()
    count, first = 0, True
    manifest: dict[str, Any] = {}
    for chunk in chunks:
        out = []
        for line in chunk.splitlines():
            row = json.loads(line)
            kind = row.pop("type")
            if kind == "manifest":
                manifest = row
            elif kind == "memory":
                memory = {**row, "memory_type": KIND_TO_TYPE.get(row["kind"], "semantic"),
                          "agent": row["agent_id"] or None, "session": row["session_id"] or None}
                out.append((b"" if first else b",") + json.dumps(
                    memory, ensure_ascii=False, separators=(",", ":")).encode())
                first = False
                count += 1
        if out:
            yield b"".join(out)
    yield f'],"count":{count},"jsonl_manifest":{json.dumps(manifest)}}}'.encode()


@extend_schema(tags=[TAG])
class ExportView(MemoryOssView):
    @extend_schema(summary="Export a namespace's memories as one JSON document (team admin; "
                   "seed 003)", parameters=[OpenApiParameter("namespace", OpenApiTypes.STR)],
                   responses=OpenApiTypes.OBJECT)
    def get(self, request):
        selector = select(request.user, {"namespace": request.query_params["namespace"]}
                          if request.query_params.get("namespace") else {})
        document = _export_document(export.start(request.user, selector), selector.namespace.slug)
        response = streaming(request, document, f"memoryweb-{selector.namespace.slug}.json")
        response["Content-Type"] = "application/json"
        return response


@extend_schema(tags=[TAG])
class MemoriesView(MemoryOssView):
    query_params = {"namespace", "agent", "session", "limit", "offset"}

    @extend_schema(summary="List a namespace's memories, newest first (seed 003 data access)",
                   parameters=[OpenApiParameter(name, OpenApiTypes.STR) for name in
                               ("namespace", "agent", "session")] +
                   [OpenApiParameter("limit", openapi.PAGE_LIMIT, description="Default 100, "
                                     "at most 1,000."),
                    OpenApiParameter("offset", openapi.PAGE_OFFSET)],
                   responses=OpenApiTypes.OBJECT)
    def get(self, request):
        params = request.query_params
        queryset = services.list_memories(request.user, params.get("namespace") or None)
        for source, target in (("agent", "agent_id"), ("session", "session_id")):
            if params.get(source):
                queryset = queryset.filter(**{target: params[source]})
        limit = int_param(params, "limit", 100, 1, settings.MEMORYWEB_LIMITS["max_page_size"])
        offset = int_param(params, "offset", 0, 0, 999_999_999)
        page = list(queryset[offset:offset + limit])
        namespace = page[0].namespace.slug if page else params.get("namespace")
        return Response({"namespace": namespace, "agent": params.get("agent"),
                         "session": params.get("session"), "count": queryset.count(),
                         "limit": limit, "offset": offset,
                         "memories": [memory_row(m) for m in page]})


_CONSOLIDATE_FIELDS = {"namespace", "threshold", "dry_run", "agent", "memory_type", "tags",
                       "merged_text"}


@extend_schema(tags=[TAG])
class ConsolidateView(MemoryOssView):
    """Seed 003's "merge similar memories" (team admin): merges at once unless
    ``dry_run`` (the seed's call does the work); reversible with
    ``POST /api/v1/memories/{id}/unmerge`` (docs/lifecycle.md)."""

    @extend_schema(summary="Seed 003's /v1/consolidate: merge similar memories (team admin)",
                   request={"application/json": openapi.V1Consolidate},
                   responses=OpenApiTypes.OBJECT)
    def post(self, request):
        body = _checked(request.data, _CONSOLIDATE_FIELDS)
        data: dict[str, Any] = {key: body[key] for key in ("threshold", "dry_run", "merged_text")
                                if body.get(key) is not None}
        filters: dict[str, Any] = {}
        if _given(body, "agent"):
            filters["agent_id"] = body["agent"]
        if _given(body, "tags"):
            filters["tags"] = body["tags"]
        if body.get("memory_type") is not None:
            filters["kind"] = _kind(body["memory_type"], "memory_type")
        if filters:
            data["filters"] = filters
        try:
            outcome = consolidation.consolidate(
                request.user, _namespace_of(request, body), data, dry_run_default=False,
                limit=settings.MEMORYWEB_CONSOLIDATE_MAX)
        except InvalidInput as exc:
            raise consolidation.renamed(exc, {"filters.agent_id": "agent",
                                              "filters.kind": "memory_type",
                                              "filters.tags": "tags"}) from None
        return Response({
            "namespace": outcome.namespace.slug, "dry_run": outcome.dry_run,
            "threshold": outcome.threshold, "candidates": outcome.candidates,
            "merged": outcome.merged, "superseded": outcome.superseded,
            "groups": [{"kept": row["survivor"], "merged": [m for m in row["members"]
                                                            if m != row["survivor"]],
                        "similarity": row["similarity"], "content": row["merged_content"],
                        **({"applied": row["applied"]} if "applied" in row else {})}
                       for row in proposal_rows(outcome)],
            "conflicts": conflict_rows(outcome)})
