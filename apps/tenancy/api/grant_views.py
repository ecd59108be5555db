"""REST door to sharing grants (apps.tenancy.grants): seed 003's sharing endpoints."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.query_params import KnownQueryParams
from apps.tenancy import grants
from apps.tenancy.models import SharingGrant


class GrantSerializer(serializers.ModelSerializer):
    grantor = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    grantee = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    status = serializers.CharField(read_only=True, help_text="active, expired or revoked")

    class Meta:
        model = SharingGrant
        fields = ["id", "grantor", "grantee", "tags", "kinds", "created_after", "created_before",
                  "expires_at", "revoked_at", "created_at", "created_by", "status"]
        read_only_fields = fields


class AccessibleGrantSerializer(GrantSerializer):
    """What the grantee sees: the scope and expiry, not who at the grantor made it."""

    class Meta(GrantSerializer.Meta):
        fields = ["id", "grantor", "grantee", "tags", "kinds", "created_after", "created_before",
                  "expires_at", "created_at"]
        read_only_fields = fields


class GrantListView(KnownQueryParams, APIView):
    @extend_schema(summary="Grants this namespace has given (team admin)",
                   responses=GrantSerializer(many=True))
    def get(self, request, slug: str):
        return Response(GrantSerializer(grants.list_grants(request.user, slug), many=True).data)

    @extend_schema(summary="Share this namespace's memories with another (team admin)",
                   request=grants.GrantInput, responses={201: GrantSerializer})
    def post(self, request, slug: str):
        grant = grants.create_grant(request.user, slug, request.data)
        return Response(GrantSerializer(grant).data, status=status.HTTP_201_CREATED)


class GrantDetailView(KnownQueryParams, APIView):
    @extend_schema(summary="A grant this namespace has given (team admin)",
                   responses=GrantSerializer)
    def get(self, request, slug: str, grant_id: int):
        return Response(GrantSerializer(grants.get_grant(request.user, slug, grant_id)).data)

    @extend_schema(summary="Revoke a grant (team admin); effective on the grantee's next request",
                   responses={204: None})
    def delete(self, request, slug: str, grant_id: int):
        grants.revoke_grant(request.user, slug, grant_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AccessibleView(KnownQueryParams, APIView):
    query_params = {"namespace"}

    @extend_schema(summary="Live grants to the caller's namespaces: what recall with "
                   "include_shared can reach",
                   parameters=[OpenApiParameter("namespace", OpenApiTypes.STR, description=
                               "Only grants to this namespace (for callers that read several).")],
                   responses=AccessibleGrantSerializer(many=True))
    def get(self, request):
        found = grants.accessible(request.user, request.query_params.get("namespace") or None)
        return Response(AccessibleGrantSerializer(found, many=True).data)
