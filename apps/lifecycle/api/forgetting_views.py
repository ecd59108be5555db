"""REST door to controlled forgetting (team admin): translate HTTP <-> apps/lifecycle/forgetting.py."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.query_params import KnownQueryParams
from apps.core.query_params import integer as int_param
from apps.lifecycle import forgetting


class WeakMemorySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    content = serializers.CharField()
    agent_id = serializers.CharField()
    kind = serializers.CharField()
    strength = serializers.FloatField()
    below_since = serializers.DateTimeField(help_text="Since when its strength is below the floor.")
    checked_at = serializers.DateTimeField()
    state = serializers.ChoiceField(choices=["watching", "proposed", "dismissed", "requested"])
    erasure_request = serializers.UUIDField(allow_null=True)
    superseded_by = serializers.UUIDField(allow_null=True)


class ReviewListSerializer(serializers.Serializer):
    namespace = serializers.CharField()
    state = serializers.CharField()
    floor = serializers.FloatField()
    after_days = serializers.IntegerField()
    count = serializers.IntegerField()
    results = WeakMemorySerializer(many=True)


class ForgettingView(KnownQueryParams, APIView):
    """The namespace's forgetting review list, and requests to forget from it (team admin)."""

    query_params = {"state", "limit"}

    @extend_schema(summary="The forgetting review list: weak memories, weakest first (team admin)",
                   parameters=[OpenApiParameter("state", str, enum=["watching", "proposed",
                                                                    "dismissed", "requested"],
                                                description="Default proposed."),
                               OpenApiParameter("limit", {"type": "integer", "minimum": 1,
                                                          "maximum": 1000},
                                                description="Default 100.")],
                   responses=ReviewListSerializer)
    def get(self, request, slug: str):
        state = request.query_params.get("state", "proposed")  # the service checks it
        limit = int_param(request.query_params, "limit", 100, 1, 1000)
        return Response(forgetting.review_list(request.user, slug, state, limit))

    @extend_schema(summary="Request forgetting of proposed memories: an erasure request "
                   "(approved, executed and certified as every erasure) (team admin)",
                   request=forgetting.DecisionInput, responses={201: OpenApiTypes.OBJECT})
    def post(self, request, slug: str):
        found = forgetting.request_forgetting(request.user, slug, request.data)
        return Response({"erasure_request": str(found.pk), "state": found.state,
                         "ids": found.selector.get("ids", [])}, status=201)


class DismissView(KnownQueryParams, APIView):
    """Keep proposed memories (team admin): not proposed again while they stay weak."""

    query_params: set[str] = set()

    @extend_schema(summary="Dismiss proposals for forgetting: keep those memories (team admin)",
                   request=forgetting.DecisionInput, responses={200: OpenApiTypes.OBJECT})
    def post(self, request, slug: str):
        return Response({"dismissed": forgetting.dismiss(request.user, slug, request.data)})
