"""REST doors to export and erasure (apps.privacy)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.errors import InvalidInput, NotFound
from apps.core.query_params import KnownQueryParams
from apps.privacy import erasure, export
from apps.privacy.models import ErasureRequest, ErasureState
from apps.privacy.selectors import SelectorInput, select

#: Memory ids a query string may carry: 100 UUIDs are 3.7 KB of URL; Daphne drops the
#: connection when the request line passes 16 KB.
MAX_QUERY_IDS = 100


def query_selector(request) -> dict[str, Any]:
    """The selector from the query string; ``ids`` as comma-separated values."""
    data: dict[str, Any] = {key: request.query_params[key] for key in request.query_params}
    if "ids" in data:
        data["ids"] = [part for part in data["ids"].split(",") if part]
        if len(data["ids"]) > MAX_QUERY_IDS:  # more would not fit Daphne's request line
            raise InvalidInput(f"at most {MAX_QUERY_IDS} ids in the query string.", field="ids")
    return data


def body_and_query_selector(request) -> dict[str, Any]:
    """A DELETE's selector from its JSON body and its query string together (a system admin
    may add ``?namespace=`` to a body); a field given in both must say the same."""
    query = query_selector(request)
    if not request.data:
        return query
    if not isinstance(request.data, Mapping):
        raise InvalidInput("expected a JSON object.")
    for name in sorted(set(request.data) & set(query)):
        if request.data[name] != query[name]:
            raise InvalidInput(f"{name} differs between the body and the query string.",
                               field=name)
    return {**query, **request.data}


async def _async_chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Pull each chunk on the thread that runs the sync views (it holds the database
    connection), so Daphne streams them; a sync iterator would be read whole first."""
    done = object()
    while (chunk := await sync_to_async(next, thread_sensitive=True)(chunks, done)) is not done:
        yield chunk


def streaming(request, chunks: Iterator[bytes], filename: str) -> StreamingHttpResponse:
    body = _async_chunks(chunks) if hasattr(request, "scope") else chunks  # ASGI or WSGI
    response = StreamingHttpResponse(body, content_type="application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class ExportView(KnownQueryParams, APIView):
    query_params = {*SelectorInput().fields}

    @extend_schema(
        summary="Export a namespace or a subject as JSON lines (team admin)",
        parameters=[SelectorInput, OpenApiParameter(
            "ids", {"type": "array", "items": {"type": "string", "format": "uuid"},
                    "minItems": 1, "maxItems": MAX_QUERY_IDS},
            style="form", explode=False, description="Comma-separated memory ids")],
        responses={200: OpenApiResponse(description="application/x-ndjson: memory lines "
                                        "(with versions), grant lines, audit lines, then a "
                                        "manifest line with counts and the body's SHA-256.")})
    def get(self, request):
        selector = select(request.user, query_selector(request))
        subject = selector.subject[0] if selector.subject else "all"
        filename = f"memoryweb-{selector.namespace.slug}-{subject}.jsonl"
        return streaming(request, export.start(request.user, selector), filename)


class ErasureRequestSerializer(serializers.ModelSerializer):
    namespace = serializers.CharField(source="namespace_slug", read_only=True)
    memories = serializers.SerializerMethodField(help_text="Erased so far (after execution).")

    class Meta:
        model = ErasureRequest
        fields = ["id", "namespace", "selector", "reason", "state", "requested_by",
                  "requested_at", "decided_by", "decided_at", "rejection_reason", "executed_by",
                  "executed_at", "memories", "certificate_sha256", "last_error"]
        read_only_fields = fields

    def get_memories(self, request: ErasureRequest) -> int:
        return len(request.erased)


def _request_body(request: ErasureRequest) -> dict[str, Any]:
    body = dict(ErasureRequestSerializer(request).data)
    if request.state == ErasureState.EXECUTED:
        body["certificate"] = request.certificate
    return body


class ErasureListView(KnownQueryParams, APIView):
    query_params = {"state"}

    @extend_schema(summary="Erasure requests of the caller's namespaces (team admin)",
                   parameters=[OpenApiParameter("state", OpenApiTypes.STR,
                                                enum=[s.value for s in ErasureState])],
                   responses=ErasureRequestSerializer(many=True))
    def get(self, request):
        found = erasure.visible(request.user)
        state = request.query_params.get("state")
        if state is not None:  # "" too: the schema's enum does not include it
            if state not in ErasureState.values:
                raise InvalidInput(f"state must be one of {', '.join(ErasureState.values)}.",
                                   field="state")
            found = found.filter(state=state)
        return Response(ErasureRequestSerializer(found[:1000], many=True).data)

    @extend_schema(summary="Request the erasure of a subject's memories (team admin)",
                   request=erasure.ErasureInput, responses={201: ErasureRequestSerializer})
    def post(self, request):
        created = erasure.create(request.user, request.data if isinstance(request.data, dict)
                                 else {})
        return Response(_request_body(created), status=status.HTTP_201_CREATED)


class ErasureDetailView(KnownQueryParams, APIView):
    @extend_schema(summary="An erasure request (with its certificate once executed)",
                   responses=ErasureRequestSerializer)
    def get(self, request, request_id: str):
        return Response(_request_body(erasure.get(request.user, request_id)))


class ErasureApproveView(KnownQueryParams, APIView):
    @extend_schema(summary="Approve a requested erasure (team admin)", request=None,
                   responses=ErasureRequestSerializer)
    def post(self, request, request_id: str):
        return Response(_request_body(erasure.approve(request.user, request_id)))


class ErasureRejectView(KnownQueryParams, APIView):
    @extend_schema(summary="Reject a requested erasure (team admin)", request=erasure.RejectInput,
                   responses=ErasureRequestSerializer)
    def post(self, request, request_id: str):
        return Response(_request_body(erasure.reject(request.user, request_id, request.data)))


class ErasureExecuteView(KnownQueryParams, APIView):
    @extend_schema(summary="Execute an approved erasure (team admin); returns the certificate",
                   request=None, responses=ErasureRequestSerializer)
    def post(self, request, request_id: str):
        return Response(_request_body(erasure.execute(request.user, request_id)))


class CertificateView(KnownQueryParams, APIView):
    @extend_schema(summary="Download an executed erasure's deletion certificate (JSON)",
                   responses={200: OpenApiTypes.OBJECT})
    def get(self, request, request_id: str):
        found = erasure.get(request.user, request_id)
        if found.state != ErasureState.EXECUTED:
            raise NotFound("no certificate: the request has not been executed.")
        response = Response(found.certificate)
        response["Content-Disposition"] = f'attachment; filename="erasure-{found.pk}.json"'
        return response


class ForgetCertifiedView(KnownQueryParams, APIView):
    query_params = {*SelectorInput().fields}

    @extend_schema(summary="Erase a subject in one call and answer the certificate (system "
                   "admin; seed 003)", request=SelectorInput,
                   responses={200: OpenApiTypes.OBJECT})
    def delete(self, request):
        executed = erasure.forget_certified(request.user, body_and_query_selector(request))
        return Response(executed.certificate)
