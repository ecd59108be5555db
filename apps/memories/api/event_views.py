"""REST door to conversation events (issue 20): ``POST /api/v1/events`` stores a batch,
``GET /api/v1/events?session_id=`` lists one session in conversation order. The rules
(idempotency by the client's id, redaction, append-only) are the events service's
(apps/memories/services/events.py); this translates HTTP."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.response import Response

from apps.core.query_params import KnownQueryParams
from apps.memories import event_schemas, schemas, services
from apps.memories.api.serializers import EventBatchResponseSerializer, EventRowSerializer
from apps.memories.api.views import NAMESPACE_PARAM, _query_namespace
from apps.memories.external_ids import external_ids_of
from apps.memories.models import ExternalId, Memory
from apps.memories.representation import event_row, stored_event_row

SESSION_PARAM = OpenApiParameter(
    "session_id", {"type": "string", "minLength": 1}, required=True,
    description="The session to list (required): its events in conversation order.")


@extend_schema_view(
    list=extend_schema(
        summary="List a session's conversation events in conversation order",
        description="Events of the session the caller may read, ordered by occurred_at, then "
        "by the order they were stored; paginated like GET /api/v1/memories.",
        parameters=[SESSION_PARAM, NAMESPACE_PARAM]),
    create=extend_schema(
        summary="Store conversation events (a batch, all or nothing, idempotent by id)",
        description="201 when anything new was stored, 200 when every id was already "
        "stored (a retry). Secrets in text, metadata and tags are redacted on arrival.",
        request=event_schemas.EventBatchRequest,
        responses={201: EventBatchResponseSerializer, 200: EventBatchResponseSerializer},
        parameters=[NAMESPACE_PARAM]),
)
class EventViewSet(KnownQueryParams, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = EventRowSerializer
    query_params = {"list": {"session_id", "namespace"}, "create": {"namespace"}}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no caller
            return Memory.objects.none()
        params = self.request.query_params
        return services.list_session_events(self.request.user, params.get("session_id", ""),
                                            params.get("namespace") or None)

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        ids = external_ids_of(page)
        return self.get_paginated_response(
            [event_row(m, ids.get(m.pk, {}).get(ExternalId.System.EVENT)) for m in page])

    def create(self, request):
        body = schemas.validate(event_schemas.EventBatchInput, request.data)
        results = services.store_events(request.user, body["events"],
                                        namespace=body.get("namespace") or _query_namespace(request))
        stored = sum(result.created for result in results)
        return Response({"results": [stored_event_row(result) for result in results],
                         "stored": stored, "existing": len(results) - stored},
                        status=status.HTTP_201_CREATED if stored else status.HTTP_200_OK)
