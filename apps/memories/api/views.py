"""REST door to the memory services: translate HTTP <-> service calls, nothing more."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.errors import InvalidInput
from apps.core.query_params import KnownQueryParams, flag
from apps.memories import schemas, services
from apps.memories.api.serializers import (
    BatchResponseSerializer,
    DeleteCountSerializer,
    IngestAndRecallResponseSerializer,
    MemoryBatchRequestSerializer,
    MemoryDetailSerializer,
    MemorySerializer,
    MemoryVersionSerializer,
    RecallResponseSerializer,
    StoredMemorySerializer,
)
from apps.memories.filters import MemoryFilter
from apps.memories.models import Memory
from apps.memories.representation import hit_rows, memory_row, stored_row

NAMESPACE_PARAM = OpenApiParameter(
    "namespace", OpenApiTypes.STR, description="Namespace slug (system-admin keys; a "
    "namespace-bound key may only name its own).",
)


INCLUDE_SUPERSEDED = OpenApiParameter(
    "include_superseded", OpenApiTypes.BOOL, description="Also list memories a "
    "consolidation superseded (default false: they are kept, but left out).")

AS_OF_PARAM = OpenApiParameter(
    "as_of", OpenApiTypes.DATETIME, description=schemas.AS_OF_HELP + " A memory stored after "
    "it is 404, as a missing one.")


def _query_namespace(request) -> str | None:
    """``?namespace=`` for system-admin keys; a body ``namespace`` takes precedence."""
    return request.query_params.get("namespace") or None


def _idempotency_key(request) -> str | None:
    return request.headers.get("Idempotency-Key") or None


@extend_schema_view(
    list=extend_schema(summary="List memories", parameters=[NAMESPACE_PARAM, INCLUDE_SUPERSEDED]),
    retrieve=extend_schema(summary="Get a memory (now, or as it was at as_of), with its "
                           "consolidation lineage", parameters=[AS_OF_PARAM],
                           responses=MemoryDetailSerializer),
    create=extend_schema(
        summary="Store a memory (identical content: 200 with the existing one, duplicate=true)",
        request=schemas.MemoryInput,
        responses={201: StoredMemorySerializer, 200: StoredMemorySerializer},
        parameters=[OpenApiParameter("Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER,
                                     description="A retry with the same key and body returns "
                                     "the first result; another body with the key is a 409.")]),
    update=extend_schema(summary="Replace a memory's editable fields (team admin)",
                         request=schemas.MemoryUpdate),
    partial_update=extend_schema(summary="Edit a memory (team admin)", request=schemas.MemoryUpdate),
    destroy=extend_schema(summary="Delete a memory (team admin)"),
)
class MemoryViewSet(KnownQueryParams, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = MemorySerializer
    #: Besides the list's filters, paging and ordering (apps/core/query_params.py).
    query_params = {"list": {"namespace", "include_superseded"}, "create": {"namespace"},
                    "batch": {"namespace"},
                    "retrieve": {"as_of"}}
    filterset_class = MemoryFilter
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no caller
            return Memory.objects.none()
        return services.list_memories(
            self.request.user, self.request.query_params.get("namespace"),
            include_superseded=flag(self.request.query_params, "include_superseded"))

    def create(self, request):
        result = services.ingest(request.user, request.data, _query_namespace(request),
                                 idempotency_key=_idempotency_key(request))
        body = stored_row(result)
        return Response(body, status=status.HTTP_200_OK if result.duplicate else status.HTTP_201_CREATED)

    def retrieve(self, request, pk=None):
        as_of = request.query_params.get("as_of")  # present but empty: a 400 naming it
        found = services.get(request.user, pk, as_of=as_of)
        row = memory_row(found)
        # Lineage names other memories of the namespace: its own readers only (a shared
        # memory's row leaves the grantor's links out, as its superseded_by).
        shown = {**services.lineage(found), "strength": services.strength_of(found)} \
            if isinstance(found, Memory) else {"derived_from": None, "conflicts_with": None,
                                               "strength": None}
        return Response({**row, **shown})

    def update(self, request, pk=None):
        memory = services.update(request.user, pk, request.data, partial=False)
        return Response(memory_row(memory))

    def partial_update(self, request, pk=None):
        memory = services.update(request.user, pk, request.data, partial=True)
        return Response(memory_row(memory))

    def destroy(self, request, pk=None):
        services.delete(request.user, pk)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(summary="Store up to 1,000 memories, all or nothing",
                   parameters=[OpenApiParameter("Idempotency-Key", OpenApiTypes.STR,
                                                OpenApiParameter.HEADER)],
                   request=MemoryBatchRequestSerializer, responses={201: BatchResponseSerializer})
    @action(detail=False, methods=["post"], filterset_class=None, pagination_class=None)
    def batch(self, request):
        body = schemas.validate(schemas.MemoryBatchInput, request.data)
        results = services.ingest_many(request.user, body["memories"],
                                       namespace=body.get("namespace") or _query_namespace(request),
                                       idempotency_key=_idempotency_key(request))
        rows = [stored_row(result) for result in results]
        duplicates = sum(result.duplicate for result in results)
        return Response({"count": len(results), "created": len(results) - duplicates,
                         "duplicates": duplicates, "results": rows}, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Edit history of a memory", responses=MemoryVersionSerializer(many=True))
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def versions(self, request, pk=None):
        return Response(MemoryVersionSerializer(services.versions(request.user, pk), many=True).data)


def _with_after_header(request) -> Any:
    """Seed 003's ``X-Memory-After: YYYY-MM-DD`` header as the ``after`` filter."""
    after = request.headers.get("X-Memory-After")
    data = request.data
    if after is None or not isinstance(data, Mapping):  # an empty header is a bad date
        return data
    filters = data.get("filters", {})
    if not isinstance(filters, Mapping):
        return data  # validation names the problem (null too: the header must not hide it)
    if filters.get("after") not in (None, after):
        raise InvalidInput("X-Memory-After and filters.after differ.", field="X-Memory-After")
    return {**data, "filters": {**filters, "after": after}}


class RecallView(KnownQueryParams, APIView):
    query_params = {"namespace"}

    @extend_schema(summary="Recall memories by meaning", request=schemas.RecallInput,
                   responses=RecallResponseSerializer,
                   parameters=[OpenApiParameter(
                       "X-Memory-After", OpenApiTypes.DATE, OpenApiParameter.HEADER,
                       description="Seed 003's after mode: only memories that happened on or "
                       "after this date (YYYY-MM-DD); the same as filters.after.")])
    def post(self, request):
        start = time.perf_counter()
        result = services.recall(request.user, _with_after_header(request),
                                 namespace=_query_namespace(request))
        result.timings["service"] = (time.perf_counter() - start) * 1000
        body = {
            "namespace": result.namespace.slug,
            "query": result.query,
            "k": result.k,
            "mode": result.mode,
            "results": hit_rows(result.hits, result.explain),
            "searched": [source.namespace.slug for source in result.sources],
        }
        if result.explain:
            body["explain"] = {"mode": result.mode, "lexical_query": result.lexical_query,
                               "lexical_dropped": list(result.lexical_dropped),
                               **result.options.describe()}
            if result.as_of is not None:  # the moment used and what was rebuilt for it
                body["explain"].update(result.as_of.describe())
            if result.mode != "hybrid":  # one channel: nothing is fused or weighted
                body["explain"].update(fusion=None, weights=None)
        response = Response(body)
        response["Server-Timing"] = ", ".join(
            f"{stage};dur={ms:.2f}" for stage, ms in result.timings.items())
        return response


class IngestAndRecallView(KnownQueryParams, APIView):
    query_params = {"namespace"}

    @extend_schema(summary="Store a memory, then recall related ones (seed 000)",
                   request=schemas.IngestAndRecallInput,
                   responses={201: IngestAndRecallResponseSerializer})
    def post(self, request):
        result = services.ingest_and_recall(request.user, request.data, _query_namespace(request))
        body = {"memory": stored_row(result.stored),
                "results": hit_rows(result.hits)}
        if result.recall_error:
            body["recall_error"] = result.recall_error.as_dict()["error"]
        return Response(body, status=status.HTTP_201_CREATED)


def bool_param(request, name: str) -> bool:
    """``?name=true|false`` (absent: false); anything else is a 400 naming it."""
    value = request.query_params.get(name, "false")
    if value not in ("true", "false"):
        raise InvalidInput(f"{name} must be true or false.", field=name)
    return value == "true"


class AgentMemoriesView(KnownQueryParams, APIView):
    query_params = {"namespace", "all_namespaces"}

    @extend_schema(summary="Delete every memory of an agent in a namespace, or in every "
                   "namespace with all_namespaces=true (system admin)",
                   parameters=[NAMESPACE_PARAM, OpenApiParameter(
                       "all_namespaces", OpenApiTypes.BOOL, description="true: every namespace "
                       "(agent ids are unique per tenant only). Required when no namespace is "
                       "named; not with one.")],
                   responses={200: DeleteCountSerializer})
    def delete(self, request, agent_id: str):
        counts = services.delete_by_agent(request.user, agent_id, _query_namespace(request),
                                          all_namespaces=bool_param(request, "all_namespaces"))
        return Response({"deleted": sum(counts.values()), "namespaces": counts})



